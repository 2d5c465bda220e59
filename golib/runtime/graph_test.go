package runtime

import (
	"bytes"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/exitnet/exitnet/golib/xerr"
)

func loadV2(t testing.TB, g *Graph, b *modelBuilder) *Model {
	t.Helper()
	m, err := Decode(b.encode(g))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func closeTo(got, want float64) bool { return math.Abs(got-want) <= 1e-5+1e-4*math.Abs(want) }

// Every op of the v2 contract: every exit's logits equal the float64
// reference interpreter (ref_v2_test.go), at 1 and 3 threads, for batch sizes
// 1, 2 and 7 (so compaction-free full runs and the parallel splits are both
// covered); exit costs equal the reference's independent MAC count.
func TestV2EveryOpMatchesReference(t *testing.T) {
	b := newBuilder(21)
	g := everyOpV2(b)
	m := loadV2(t, g, b)
	insz := 3 * 11 * 9
	forThreads(func(threads int) {
		for _, n := range []int{1, 2, 7} {
			x := randInput(uint64(30+n), n, insz)
			var res Result
			if err := m.Predict(&res, x, n, Options{Temperature: 1, ReturnLogits: true}); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < n; i++ {
				want, macs := refLogitsV2(g, b, x[i*insz:(i+1)*insz])
				for k := range want {
					for c, w := range want[k] {
						if got := float64(res.Logits[k][i*4+c]); !closeTo(got, w) {
							t.Fatalf("threads %d n %d sample %d exit %d class %d: got %g want %g", threads, n, i, k, c, got, w)
						}
					}
				}
				var acc int64
				for k, c := range m.ExitCosts() {
					acc += macs[2*k] + macs[2*k+1]
					if c != acc {
						t.Fatalf("exit %d cost %d, reference counts %d", k, c, acc)
					}
				}
			}
		}
	})
}

// The buffer plan reuses memory: everyOpV2 has 45 nodes but needs far fewer
// workspace slots, and a chain of in-place ops needs no new slot.
func TestV2BufferPlanReuses(t *testing.T) {
	b := newBuilder(21)
	m := loadV2(t, everyOpV2(b), b)
	if len(m.slots) > 12 {
		t.Fatalf("%d workspace slots for 45 nodes", len(m.slots))
	}
	b = newBuilder(22)
	g := &Graph{FormatVersion: 2, InputShape: []int{2, 4, 4}, NumClasses: 3, Stages: []Block{{Output: "e", Nodes: []Node{
		b.conv2("a", "input", 2, 2, 3, 3, 1, 1, 1, 1, true),
		nd("b", "sigmoid", "a"), // fused into a
		withAttr(nd("c", "add_scalar", "b"), func(n *Node) { n.Value = fptr(1) }),
		nd("d", "silu", "c"),
		b.scaleShift("e", "d", 2),
	}}}, Heads: []Block{{Output: "l", Nodes: []Node{nd("f", "flatten", "input"), b.linear2("l", "f", 32, 3)}}}}
	m = loadV2(t, g, b)
	if n := len(m.stages[0].code); n != 4 || m.stages[0].code[0].act != actSigmoid {
		t.Fatalf("stage code: %d instructions (want conv+sigmoid, add_scalar, silu, scale_shift)", n)
	}
	for _, ins := range m.stages[0].code[1:] {
		if ins.out != ins.in {
			t.Fatalf("%s: not in place (in %d, out %d)", ins.name, ins.in, ins.out)
		}
	}
	x := randInput(5, 3, 32)
	var res Result
	if err := m.Predict(&res, x, 3, Options{Temperature: 1, ReturnLogits: true}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		want, _ := refLogitsV2(g, b, x[i*32:(i+1)*32])
		for c := range 3 {
			if got := float64(res.Logits[0][i*3+c]); !closeTo(got, want[0][c]) {
				t.Fatalf("sample %d class %d: %g want %g", i, c, got, want[0][c])
			}
		}
	}
}

// Early exit on the v2 graph: a stage runs only on the samples still running,
// and the logits of those samples equal the reference (so compaction moved
// every live value correctly).
func TestV2Compaction(t *testing.T) {
	b := newBuilder(21)
	g := everyOpV2(b)
	m := loadV2(t, g, b)
	const n = 40
	insz := 3 * 11 * 9
	x := randInput(77, n, insz)
	var res Result
	if err := m.Predict(&res, x, n, Options{Temperature: 1, ReturnLogits: true}); err != nil {
		t.Fatal(err)
	}
	// thresholds at the median max-softmax of exits 0 and 1, so every exit takes some
	tau := make([]float32, 2)
	for k := range tau {
		conf := make([]float64, n)
		for i := range conf {
			z := res.Logits[k][i*4 : i*4+4]
			mx := slices.Max(z)
			s := 0.0
			for _, v := range z {
				s += math.Exp(float64(v - mx))
			}
			conf[i] = 1 / s
		}
		slices.Sort(conf)
		tau[k] = float32(conf[n/2])
	}
	if err := m.Predict(&res, x, n, Options{Temperature: 1, Thresholds: tau, ReturnLogits: true}); err != nil {
		t.Fatal(err)
	}
	costs := m.ExitCosts()
	var macs int64
	seen := map[int32]int{}
	for i := 0; i < n; i++ {
		k := int(res.Exit[i])
		seen[res.Exit[i]]++
		macs += costs[k]
		want, _ := refLogitsV2(g, b, x[i*insz:(i+1)*insz])
		for c := range 4 {
			if got := float64(res.Logits[k][i*4+c]); !closeTo(got, want[k][c]) {
				t.Fatalf("sample %d exit %d class %d: %g want %g", i, k, c, got, want[k][c])
			}
		}
	}
	if res.MACs != macs || len(seen) < 3 {
		t.Fatalf("MACs %d want %d; exits taken %v", res.MACs, macs, seen)
	}
}

// Raw inputs: the stored mean/std are applied first ((x − mean)/std in
// float32), giving exactly the result on inputs normalised by the caller.
func TestPreprocess(t *testing.T) {
	b := newBuilder(21)
	g := everyOpV2(b)
	mean, std := []float64{0.5, -0.25, 2}, []float64{0.2, 1.5, 3}
	g.Preprocess = &Preprocess{Mean: mean, Std: std}
	m := loadV2(t, g, b)
	gm, gs, ok := m.Preprocess()
	if !ok || gm[2] != 2 || gs[0] != float32(0.2) {
		t.Fatalf("getter: %v %v %v", gm, gs, ok)
	}
	const n = 5
	insz, L := 3*11*9, 11*9
	raw := randInput(3, n, insz)
	norm := make([]float32, len(raw))
	for i, v := range raw {
		c := i / L % 3
		norm[i] = (v - float32(mean[c])) / float32(std[c])
	}
	var a, c Result
	if err := m.Predict(&a, raw, n, Options{Temperature: 1, Raw: true, ReturnLogits: true}); err != nil {
		t.Fatal(err)
	}
	if err := m.Predict(&c, norm, n, Options{Temperature: 1, ReturnLogits: true}); err != nil {
		t.Fatal(err)
	}
	for k := range a.Logits {
		for i := range a.Logits[k] {
			if a.Logits[k][i] != c.Logits[k][i] {
				t.Fatalf("exit %d value %d: raw %g, normalised %g", k, i, a.Logits[k][i], c.Logits[k][i])
			}
		}
	}
	// a model without preprocessing refuses raw inputs
	b2 := newBuilder(21)
	m2 := loadV2(t, everyOpV2(b2), b2)
	if _, _, ok := m2.Preprocess(); ok {
		t.Fatal("no preprocessing expected")
	}
	err := m2.Predict(&a, raw, n, Options{Temperature: 1, Raw: true})
	if xerr.CodeOf(err) != xerr.StatusInvalidArgument || !strings.Contains(err.Error(), "raw") {
		t.Fatalf("raw without preprocessing: %v", err)
	}
}

// Temperatures that are not a finite float32 > 0 are refused, 0 included
// (what 1e-50 becomes in float32), with the reason.
func TestTemperatureRefused(t *testing.T) {
	b := newBuilder(21)
	m := loadV2(t, everyOpV2(b), b)
	x := randInput(1, 2, 3*11*9)
	var res Result
	for _, T := range []float32{0, float32(1e-50), -1, float32(math.Inf(1)), float32(math.NaN())} {
		err := m.Predict(&res, x, 2, Options{Temperature: T})
		if xerr.CodeOf(err) != xerr.StatusInvalidArgument || !strings.Contains(err.Error(), "temperature") {
			t.Fatalf("T=%g: %v", T, err)
		}
		if T == 0 && !strings.Contains(err.Error(), "underflows") {
			t.Fatalf("T=0: the message should explain underflow: %v", err)
		}
	}
	if err := m.Predict(&res, x, 2, Options{Temperature: 1e-30}); err != nil {
		t.Fatalf("tiny normal temperature: %v", err)
	}
}

// encodeRaw writes a model file with the given metadata version and graph JSON.
func encodeRaw(t *testing.T, version, graphJSON string) []byte {
	t.Helper()
	md := arrow.NewMetadata([]string{MetaKind, MetaFormatVersion, MetaGraph}, []string{KindModel, version, graphJSON})
	sc := arrow.NewSchema([]arrow.Field{
		{Name: "name", Type: arrow.BinaryTypes.String},
		{Name: "shape", Type: arrow.ListOf(arrow.PrimitiveTypes.Int32)},
		{Name: "data", Type: arrow.ListOf(arrow.PrimitiveTypes.Float32)},
	}, &md)
	bld := array.NewRecordBuilder(memory.NewGoAllocator(), sc)
	defer bld.Release()
	rec := bld.NewRecordBatch()
	defer rec.Release()
	var buf bytes.Buffer
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(sc))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Versions: other versions are refused naming the version (and the producer
// of a newer one); metadata and graph must agree.
func TestFormatVersions(t *testing.T) {
	cases := []struct {
		meta, graph string
		code        xerr.Status
		want        string
	}{
		{"3", `{"format_version":3,"producer":"exitnet 9.0"}`, xerr.StatusNotSupported, `format_version 3, written by a newer exitnet (exitnet 9.0)`},
		{"0", `{"format_version":0}`, xerr.StatusIO, `"0"`},
		{"x", `{}`, xerr.StatusIO, `"x"`},
		{"1", `{"format_version":2}`, xerr.StatusIO, "metadata says 1"},
		{"2", `{"format_version":2,"input_shape":[1,2,2],"num_classes":2,"stages":[],"heads":[],"bogus":1}`, xerr.StatusIO, `"bogus"`},
	}
	for _, c := range cases {
		_, err := Decode(encodeRaw(t, c.meta, c.graph))
		if xerr.CodeOf(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("meta %s graph %s: got %v (status %v), want %q", c.meta, c.graph, err, xerr.CodeOf(err), c.want)
		}
	}
}

// Forged or broken graphs are refused with a message naming the stage/head
// and node.
func TestV2BadGraphs(t *testing.T) {
	mutate := func(f func(g *Graph, b *modelBuilder)) []byte {
		b := newBuilder(21)
		g := everyOpV2(b)
		f(g, b)
		return b.encode(g)
	}
	s0 := func(g *Graph) []Node { return g.Stages[0].Nodes }
	cases := []struct {
		name string
		data []byte
		code xerr.Status
		want string
	}{
		{"cycle", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[1].Inputs = []string{"r1"} }), xerr.StatusIO, `stage 0 node "c1" (conv2d): reads "r1", which comes at or after it`},
		{"self", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[2].Inputs = []string{"r1"} }), xerr.StatusIO, `node "r1" (relu): reads "r1"`},
		{"unknown input", mutate(func(g *Graph, _ *modelBuilder) { g.Heads[1].Nodes[1].Inputs = []string{"nope"} }), xerr.StatusIO, `head 1 node "fl" (flatten): reads "nope", which is not a node of head 1`},
		{"duplicate", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[2].Name = "c1" }), xerr.StatusIO, `two nodes are named "c1"`},
		{"reserved", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[0].Name = "input" }), xerr.StatusIO, "reserved"},
		{"output", mutate(func(g *Graph, _ *modelBuilder) { g.Stages[2].Output = "zz" }), xerr.StatusIO, `stage 2: output "zz"`},
		{"dead", mutate(func(g *Graph, _ *modelBuilder) { g.Stages[0].Output = "r3" }), xerr.StatusIO, `stage 0 node "mp2" (maxpool2d): the result is never used`},
		{"weight shape", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[3].Weight = "c1.weight" }), xerr.StatusIO, `stage 0 node "c2" (conv2d): weight "c1.weight" has shape [6 3 3 3], want [any 2 any any]`},
		{"mul shapes", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[6].Inputs = []string{"sc", "bn0"} }), xerr.StatusIO, `stage 0 node "sq" (mul): inputs of shapes [6, 11, 9] and [3, 11, 9]`},
		{"cat shapes", mutate(func(g *Graph, _ *modelBuilder) { g.Stages[1].Nodes[4].Inputs = []string{"ag", "input", "c"} }), xerr.StatusIO, `reads "c", which is not a node`},
		{"cat H", mutate(func(g *Graph, b *modelBuilder) {
			n := &g.Stages[1].Nodes[2]
			n.Stride = []int{2, 2}
		}), xerr.StatusIO, `stage 1 node "cat1" (cat): input 1 ("bt") is [4, 3, 2]`},
		{"linear on map", mutate(func(g *Graph, _ *modelBuilder) { g.Heads[1].Nodes[1].Op = "identity" }), xerr.StatusIO, `head 1 node "fc" (linear): input [17, 2, 2] is not flat`},
		{"unknown op", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[9].Op = "dropout2" }), xerr.StatusNotSupported, `stage 0 node "drop" (dropout2): unknown op "dropout2"`},
		{"arity", mutate(func(g *Graph, _ *modelBuilder) { s0(g)[6].Inputs = []string{"sc"} }), xerr.StatusIO, `node "sq" (mul): 1 inputs, mul takes 2`},
		{"gelu approx", mutate(func(g *Graph, _ *modelBuilder) { g.Stages[1].Nodes[3].Approximate = "fast" }), xerr.StatusNotSupported, `"fast"`},
		{"costs", mutate(func(g *Graph, _ *modelBuilder) { g.Costs = &Costs{Stages: []int64{10, 0, 0}, Heads: []int64{0, 0, 0}} }), xerr.StatusIO, "stage 0: declared cost 10 MACs per sample, the graph computes"},
		{"costs length", mutate(func(g *Graph, _ *modelBuilder) { g.Costs = &Costs{Stages: []int64{10}} }), xerr.StatusIO, "costs list 1 stages"},
		{"preprocess channels", mutate(func(g *Graph, _ *modelBuilder) {
			g.Preprocess = &Preprocess{Mean: []float64{0, 0}, Std: []float64{1, 1}}
		}), xerr.StatusIO, "preprocess has 2 means"},
		{"preprocess std", mutate(func(g *Graph, _ *modelBuilder) {
			g.Preprocess = &Preprocess{Mean: []float64{0, 0, 0}, Std: []float64{1, 0, 1}}
		}), xerr.StatusIO, "preprocess channel 1"},
		{"pool dilation", mutate(func(g *Graph, _ *modelBuilder) { g.Stages[1].Nodes[7].Dilation = []int{2, 2} }), xerr.StatusNotSupported, `node "mp" (maxpool2d): dilation`},
		{"mean dims", mutate(func(g *Graph, _ *modelBuilder) { g.Heads[0].Nodes[1].Dims = []int{1} }), xerr.StatusNotSupported, `head 0 node "m" (mean): dims [1]`},
		{"head logits", mutate(func(g *Graph, _ *modelBuilder) { g.NumClasses = 5 }), xerr.StatusIO, `head 0: output "fc" is [4], want flat [5]`},
	}
	for _, c := range cases {
		_, err := Decode(c.data)
		if xerr.CodeOf(err) != c.code || err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v (status %v), want %q", c.name, err, xerr.CodeOf(err), c.want)
		}
	}
}

// A file whose real work is absurd (a long chain of pools over a 4×2048×2048
// input: 1.3e11 operations per sample, declared costs say 0) is refused at
// load, quickly; the bound is settable.
func TestWorkBound(t *testing.T) {
	g := &Graph{FormatVersion: 2, InputShape: []int{4, 2048, 2048}, NumClasses: 2}
	nodes := []Node{}
	prev := "input"
	for i := range 8000 {
		n := pool("p"+itoa(i), "maxpool2d", prev, 1, 1, 0, false, nil)
		nodes = append(nodes, n)
		prev = n.Name
	}
	b := newBuilder(1)
	g.Stages = []Block{{Nodes: nodes, Output: prev}}
	g.Heads = []Block{{Output: "fc", Nodes: []Node{
		withAttr(nd("m", "mean", "input"), func(n *Node) { n.Dims = []int{2, 3} }),
		b.linear2("fc", "m", 4, 2)}}}
	g.Costs = &Costs{Stages: []int64{0}, Heads: []int64{8}}
	_, err := Decode(b.encode(g))
	if xerr.CodeOf(err) != xerr.StatusIO || !strings.Contains(err.Error(), "more than the limit 100000000000") {
		t.Fatalf("absurd work: %v", err)
	}
	// the bound is settable: a real model loads at its own work, not one below
	b2 := newBuilder(21)
	data := b2.encode(everyOpV2(b2))
	m, err := Decode(data)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = SetMaxWorkPerSample(DefaultMaxWorkPerSample) }()
	if err := SetMaxWorkPerSample(m.WorkPerSample()); err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(data); err != nil {
		t.Fatalf("at the bound: %v", err)
	}
	_ = SetMaxWorkPerSample(m.WorkPerSample() - 1)
	if _, err := Decode(data); xerr.CodeOf(err) != xerr.StatusIO || !strings.Contains(err.Error(), "operations per sample") {
		t.Fatalf("below the bound: %v", err)
	}
	if err := SetMaxWorkPerSample(0); xerr.CodeOf(err) != xerr.StatusInvalidArgument {
		t.Fatalf("0: %v", err)
	}
}

func itoa(i int) string { js, _ := json.Marshal(i); return string(js) }

// A format-1 file loads as it did: its graph, converted to format 2 at load
// (graph_v1.go) and written back as a format-2 file, gives bit-identical
// logits and the same costs; the format-1 logits equal the format-1 reference
// interpreter (TestLogitsMatchReference).
func TestV1ConvertsToEqualV2(t *testing.T) {
	b := newBuilder(1)
	m1, err := Decode(b.encode(everyOpGraph(b)))
	if err != nil {
		t.Fatal(err)
	}
	g := *m1.Graph()
	if g.FormatVersion != 1 || g.Stages[1].Nodes[3].Name != "0.add" {
		t.Fatalf("converted graph: version %d, stage 1 node 3 %q", g.FormatVersion, g.Stages[1].Nodes[3].Name)
	}
	g.FormatVersion = 2
	m2, err := Decode(b.encode(&g))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(m1.ExitCosts(), m2.ExitCosts()) {
		t.Fatalf("costs %v vs %v", m1.ExitCosts(), m2.ExitCosts())
	}
	x := randInput(8, 9, 3*13*12)
	var r1, r2 Result
	for _, r := range []struct {
		m   *Model
		res *Result
	}{{m1, &r1}, {m2, &r2}} {
		if err := r.m.Predict(r.res, x, 9, Options{Temperature: 1, Thresholds: []float32{0.5}, ReturnLogits: true}); err != nil {
			t.Fatal(err)
		}
	}
	for k := range r1.Logits {
		for i, v := range r1.Logits[k] {
			if math.Float32bits(v) != math.Float32bits(r2.Logits[k][i]) {
				t.Fatalf("exit %d value %d: %g vs %g", k, i, v, r2.Logits[k][i])
			}
		}
	}
	if !slices.Equal(r1.Exit, r2.Exit) || r1.MACs != r2.MACs {
		t.Fatal("exits or MACs differ")
	}
}
