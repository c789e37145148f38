package policy

import "time"

// testTimeout bounds one decision in tests. The production default
// (DefaultTimeout, and the gateway's policy_timeout) is short on purpose; a
// test that compares or counts decisions must not fail because a loaded
// machine took longer, so tests give each decision a generous deadline.
// Only TestDecideTimeout tests the deadline itself.
const testTimeout = 30 * time.Second
