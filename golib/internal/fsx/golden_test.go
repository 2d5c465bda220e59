package fsx_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/exitnet/exitnet/golib/distill"
	"github.com/exitnet/exitnet/golib/fisher"
	"github.com/exitnet/exitnet/golib/runtime"
)

// The Go readers on the golden files of docs/file-format.md (tests/data, written by
// scripts/make_golden.py): container version 2 and version 1, against the values
// recorded at generation (model logits by torch).

type golden struct {
	Targets struct {
		IDs    []int64       `json:"ids"`
		Logits [][][]float32 `json:"logits"`
	} `json:"targets"`
	State struct {
		Fisher []float32 `json:"fisher"`
		Anchor []float32 `json:"anchor"`
	} `json:"state"`
	Accumulator struct {
		Compute []float64 `json:"compute"`
	} `json:"accumulator"`
	Model struct {
		Input  [][][][]float32 `json:"input"`
		Logits [][]float32     `json:"logits"`
	} `json:"model"`
}

func data(name string) string { return filepath.Join("..", "..", "..", "tests", "data", name) }

func loadGolden(t *testing.T) golden {
	b, err := os.ReadFile(data("golden_expected.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g golden
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func TestGoldenFiles(t *testing.T) {
	g := loadGolden(t)
	for _, v := range []string{"v1", "v2"} {
		tg, err := distill.OpenTargets(data("golden_targets_" + v + ".arrow"))
		if err != nil {
			t.Fatalf("targets %s: %v", v, err)
		}
		for j := 0; j < 2; j++ {
			dst := make([]float32, len(g.Targets.IDs)*3)
			if err := tg.Gather(dst, g.Targets.IDs, j); err != nil {
				t.Fatal(err)
			}
			for i, row := range g.Targets.Logits[j] {
				for c, want := range row {
					if dst[i*3+c] != want {
						t.Fatalf("targets %s exit %d [%d,%d] = %v, want %v", v, j, i, c, dst[i*3+c], want)
					}
				}
			}
		}
		tg.Close()

		s, err := fisher.LoadState(data("golden_state_" + v + ".arrow"))
		if err != nil {
			t.Fatalf("state %s: %v", v, err)
		}
		for i := range g.State.Fisher {
			if s.Fishers[0][i] != g.State.Fisher[i] || s.Anchors[0][i] != g.State.Anchor[i] {
				t.Fatalf("state %s element %d: %v %v", v, i, s.Fishers[0][i], s.Anchors[0][i])
			}
		}

		m, err := runtime.Load(data("golden_model_" + v + ".exitnet"))
		if err != nil {
			t.Fatalf("model %s: %v", v, err)
		}
		var x []float32
		for _, img := range g.Model.Input {
			for _, ch := range img {
				for _, row := range ch {
					x = append(x, row...)
				}
			}
		}
		var res runtime.Result
		if err := m.Predict(&res, x, 2, runtime.Options{Temperature: 1, ReturnLogits: true}); err != nil {
			t.Fatal(err)
		}
		last := res.Logits[len(res.Logits)-1]
		for i, row := range g.Model.Logits {
			for c, want := range row {
				if d := math.Abs(float64(last[i*3+c] - want)); d > 1e-5 {
					t.Fatalf("model %s logit [%d,%d] = %v, want %v", v, i, c, last[i*3+c], want)
				}
			}
		}
	}
	a, err := fisher.LoadAccumulator(data("golden_accumulator_v2.arrow"))
	if err != nil {
		t.Fatal(err)
	}
	got := make([]float32, a.Layout().Size())
	if err := a.Compute(got); err != nil {
		t.Fatal(err)
	}
	for i, want := range g.Accumulator.Compute {
		if math.Abs(float64(got[i])-want) > 1e-6*want {
			t.Fatalf("accumulator element %d = %v, want %v", i, got[i], want)
		}
	}
}
