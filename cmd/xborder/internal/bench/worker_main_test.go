package bench_test

import (
	"os"
	"testing"

	"github.com/xborder/xborder/gateway/gatewaytest"
)

// TestMain lets this test binary be the worker process of the candidates
// and policy tests its gateways evaluate, and removes what the gateways
// shared when the tests end (gatewaytest.Main).
func TestMain(m *testing.M) {
	os.Exit(gatewaytest.Main(m))
}
