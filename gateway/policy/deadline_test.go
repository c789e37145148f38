package policy_test

import "time"

// testTimeout bounds one decision in tests (see deadline_internal_test.go).
const testTimeout = 30 * time.Second
