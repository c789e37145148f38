package gateway_test

import (
	"os"
	"testing"

	"github.com/xborder/xborder/gateway/policy/worker"
)

// TestMain lets this test binary be the worker process of the candidates
// and policy tests its gateways evaluate (os.Executable() "policy worker").
func TestMain(m *testing.M) {
	worker.RunIfChild()
	os.Exit(m.Run())
}
