package bench

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of /proc/<pid>/stat times; it is 100 on
// every Linux architecture Go supports.
const clockTicks = 100

// ProcCPU is the user+system CPU time a process has used, from
// /proc/<pid>/stat (all its threads, GC included).
func ProcCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("bench: /proc stat: no command field")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("bench: /proc stat: short")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("bench: /proc stat: %w", err)
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// ProcRSS is a process's resident set size in MiB (VmRSS): its own memory
// and the pages of mapped files (the bbolt store) it touched.
func ProcRSS(pid int) (float64, error) { return procStatusMiB(pid, "VmRSS:") }

// ProcRSSAnon is the anonymous part of the resident set in MiB (RssAnon):
// heap and stacks, without file mappings — the gateway's own memory.
func ProcRSSAnon(pid int) (float64, error) { return procStatusMiB(pid, "RssAnon:") }

func procStatusMiB(pid int, key string) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			if err != nil {
				return 0, fmt.Errorf("bench: %s %w", key, err)
			}
			return kb / 1024, nil
		}
	}
	return 0, errors.New("bench: no " + key)
}

// cpuStat is the machine's CPU time from the first line of /proc/stat, in
// clock ticks: all of it, and the part stolen by the hypervisor for other
// guests (on cores shared with other tenants, time this machine wanted
// and did not get).
type cpuStat struct{ total, steal uint64 }

func machineCPU() (cpuStat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuStat{}, fmt.Errorf("bench: %w", err)
	}
	return parseCPUStat(string(b))
}

// parseCPUStat reads "cpu  user nice system idle iowait irq softirq steal
// guest guest_nice": total is the sum of the first eight (guest time is
// already counted in user), steal the eighth.
func parseCPUStat(s string) (cpuStat, error) {
	line, _, _ := strings.Cut(s, "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return cpuStat{}, errors.New("bench: /proc/stat: no cpu line with steal")
	}
	var c cpuStat
	for i, v := range f[1:9] {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return cpuStat{}, fmt.Errorf("bench: /proc/stat: %w", err)
		}
		c.total += n
		if i == 7 {
			c.steal = n
		}
	}
	return c, nil
}

// stealPct is the share of the machine's CPU time stolen between a and b.
func stealPct(a, b cpuStat) float64 {
	if b.total <= a.total {
		return 0
	}
	return 100 * float64(b.steal-a.steal) / float64(b.total-a.total)
}

// selfCPU is this process's user+system CPU time.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

type rssSampler struct {
	stopc   chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples []float64
	anon    []float64
}

// rssSummary: start is the mean of the first tenth of the samples, end of
// the last tenth, growth end against start; steady is the growth of end
// against the second tenth, once the gateway has reached its working set
// under the load (connections, buffers, the collector's headroom).
type rssSummary struct{ peak, start, end, growth, steady float64 }

func sampleRSS(pid int, every time.Duration) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			v, err := ProcRSS(pid)
			a, aerr := ProcRSSAnon(pid)
			if err == nil && aerr == nil {
				s.mu.Lock()
				s.samples = append(s.samples, v)
				s.anon = append(s.anon, a)
				s.mu.Unlock()
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

// stop ends the sampling; growth compares the mean of the last tenth of the
// samples with the mean of the first tenth.
func (s *rssSampler) stop() (total, anon rssSummary) {
	close(s.stopc)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return summarise(s.samples), summarise(s.anon)
}

func summarise(samples []float64) rssSummary {
	var r rssSummary
	n := len(samples)
	if n == 0 {
		return r
	}
	for _, v := range samples {
		r.peak = max(r.peak, v)
	}
	k := max(n/10, 1)
	mean := func(xs []float64) float64 {
		t := 0.0
		for _, x := range xs {
			t += x
		}
		return t / float64(len(xs))
	}
	r.start, r.end = mean(samples[:k]), mean(samples[n-k:])
	if r.start > 0 {
		r.growth = (r.end - r.start) * 100 / r.start
	}
	if n >= 3*k {
		if second := mean(samples[k : 2*k]); second > 0 {
			r.steady = (r.end - second) * 100 / second
		}
	}
	return r
}

// PIDByPort finds the process listening on a local TCP port: the socket's
// inode from /proc/net/tcp{,6}, then the process holding a descriptor to
// it. It sees only processes of the same user (or all, as root).
func PIDByPort(port int) (int, error) {
	want := fmt.Sprintf(":%04X", port)
	inodes := map[string]bool{}
	for _, file := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			// local_address, ..., st (0A = LISTEN), ..., inode (field 10)
			if len(f) > 9 && strings.HasSuffix(f[1], want) && f[3] == "0A" {
				inodes[f[9]] = true
			}
		}
	}
	if len(inodes) == 0 {
		return 0, fmt.Errorf("bench: nothing listens on port %d", port)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/fd/*")
	for _, fd := range procs {
		l, err := os.Readlink(fd)
		if err != nil || !strings.HasPrefix(l, "socket:[") {
			continue
		}
		if inodes[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] {
			pid, err := strconv.Atoi(strings.Split(fd, "/")[2])
			if err == nil {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("bench: no visible process holds the socket of port %d (pass --pid)", port)
}

func machine() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "model name"); ok {
			return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
		}
	}
	return "unknown"
}
