package main
import (
 _ "github.com/gin-gonic/gin"
 _ "github.com/go-jose/go-jose/v4"
 _ "github.com/open-policy-agent/opa/v1/rego"
 _ "github.com/open-policy-agent/opa/v1/tester"
 _ "go.etcd.io/bbolt"
 _ "github.com/redis/go-redis/v9"
 _ "github.com/spf13/cobra"
 _ "gopkg.in/yaml.v3"
 _ "github.com/google/uuid"
 _ "github.com/prometheus/client_golang/prometheus"
)
func main(){}
