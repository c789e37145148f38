package bench

import (
	"errors"
	"math"
	"testing"
)

func TestSummarise(t *testing.T) {
	// 100 samples: a ramp from idle over the first tenth (10 → 19), then
	// flat at 20, and 21 over the last tenth.
	var s []float64
	for i := range 10 {
		s = append(s, float64(10+i))
	}
	for range 80 {
		s = append(s, 20)
	}
	for range 10 {
		s = append(s, 21)
	}
	r := summarise(s)
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if !near(r.peak, 21) || !near(r.start, 14.5) || !near(r.end, 21) {
		t.Fatalf("peak/start/end = %v/%v/%v, want 21/14.5/21", r.peak, r.start, r.end)
	}
	if want := (21.0 - 14.5) * 100 / 14.5; !near(r.growth, want) {
		t.Errorf("growth = %v, want %v", r.growth, want)
	}
	if !near(r.steady, 5) { // 20 → 21 after the first tenth
		t.Errorf("steady = %v, want 5", r.steady)
	}
	if r := summarise([]float64{5, 6}); r.steady != 0 || r.end != 6 {
		t.Errorf("two samples: %+v", r)
	}
}

// A floor is the median of its passes, each over n/floorPasses messages:
// one pass that met a burst of steal does not move it.
func TestMedianOfPasses(t *testing.T) {
	figures := []float64{900, 3000, 1000} // the second pass met a burst
	var sizes []int
	got, err := medianOfPasses(2000, func(m int) (float64, error) {
		sizes = append(sizes, m)
		return figures[len(sizes)-1], nil
	})
	if err != nil || got != 1000 {
		t.Fatalf("median %v, %v; want 1000", got, err)
	}
	if len(sizes) != floorPasses || sizes[0] != 2000/floorPasses {
		t.Fatalf("passes over %v messages; want %d passes over %d", sizes, floorPasses, 2000/floorPasses)
	}
	if _, err := medianOfPasses(2000, func(int) (float64, error) { return 0, errors.New("boom") }); err == nil {
		t.Fatal("a failed pass gave no error")
	}
}

func TestParseCPUStat(t *testing.T) {
	const stat = "cpu  3075862 5098 214370 712287 30814 0 20061 252995 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n"
	c, err := parseCPUStat(stat)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(3075862 + 5098 + 214370 + 712287 + 30814 + 0 + 20061 + 252995); c.total != want || c.steal != 252995 {
		t.Fatalf("total %d steal %d; want %d and 252995", c.total, c.steal, want)
	}
	if got := stealPct(cpuStat{total: 1000, steal: 10}, cpuStat{total: 1200, steal: 50}); got != 20 {
		t.Errorf("steal %v %%, want 20", got)
	}
	if got := stealPct(c, c); got != 0 {
		t.Errorf("steal over no time %v, want 0", got)
	}
	for _, bad := range []string{"", "cpu 1 2 3\n", "intr 1 2 3 4 5 6 7 8 9\n", "cpu 1 2 3 4 5 6 7 x 0 0\n"} {
		if _, err := parseCPUStat(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
