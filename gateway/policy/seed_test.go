package policy

import (
	"context"
	"reflect"
	"slices"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/xborder/xborder/policies"
)

const seedModule = `package p

a := data.cfg.x

b := input.y

c := a + 1

d := _f(1)

_f(n) := n + input.y

e := x if {
	x := _g with input as 2
}

_g := 1

f := {k | some k in data.cfg.list}

g := count(data.q)

h := data.cfg.missing

i := to_number("x")

j[k] := 1 if some k in data.cfg.list
`

func TestSeedsAreTheDataOnlyRules(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"p.rego":    {Data: []byte(seedModule)},
		"q.rego":    {Data: []byte("package q\n\nz := input.y\n")},
		"data.json": {Data: []byte(`{"cfg": {"x": 1, "list": ["u", "v"]}}`)},
	}
	b, err := Compile(context.Background(), fsys, Options{Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range b.seeds.refs {
		got = append(got, r.String())
	}
	// b, d: input; e: with; g: reaches every rule of q (one reads input); i: a built-in error,
	// left to the decision; j: a partial object.
	want := []string{"data.p._g", "data.p.a", "data.p.c", "data.p.f", "data.p.h"}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Fatalf("seeded %v, want %v", got, want)
	}
	h := b.seeds.refs[slices.Index(got, "data.p.h")]
	if v, undefined := b.seeds.cache.get(refHash(h), h); v != nil || !undefined {
		t.Errorf("data.p.h = %v, %v; want undefined", v, undefined)
	}
}

// Seeding changes no decision: every scenario decides alike with and
// without it, also concurrently (run with -race).
func TestSeededDecisionsMatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	seeded, err := Compile(ctx, policies.FS(), Options{Timeout: testTimeout})
	if err != nil {
		t.Fatal(err)
	}
	if len(seeded.seeds.refs) == 0 {
		t.Fatal("nothing seeded")
	}
	plain := *seeded
	plain.seeds = nil
	names, err := ScenarioFiles(policies.FS(), ScenarioDir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, name := range names {
		s, err := LoadScenario(policies.FS(), name)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := plain.Decide(ctx, s.Input)
		for range 4 {
			wg.Go(func() {
				got, err := seeded.Decide(ctx, s.Input)
				if (err == nil) != (wantErr == nil) || !reflect.DeepEqual(got, want) {
					t.Errorf("%s: seeded %+v (%v), plain %+v (%v)", name, got, err, want, wantErr)
				}
			})
		}
	}
	wg.Wait()
}
