package fisher_test

import (
	"fmt"

	"github.com/exitnet/exitnet/golib/fisher"
)

// A Linear layer y = W a + b with 2 inputs and 1 output, two samples: the
// per-sample weight gradients are g_n a_nᵀ, so F_W = mean_n (g_n a_n)².
func ExampleAccumulator_UpdateLinear() {
	layout, _ := fisher.NewLayout([]fisher.Param{{Name: "w", Shape: []int{1, 2}}, {Name: "b", Shape: []int{1}}})
	acc, _ := fisher.New(layout, fisher.LabelEmpirical)
	A := []float32{1, 2, 3, 4} // 2 samples × 2 inputs
	G := []float32{1, -2}      // 2 samples × 1 output
	_ = acc.UpdateLinear("w", "b", A, G, 2, 2, 1, nil)
	_ = acc.AddSamples(2)
	f := make([]float32, layout.Size())
	_ = acc.Compute(f)
	fmt.Println(f) // w: ((1·1)² + (−2·3)²)/2, ((1·2)² + (−2·4)²)/2; b: (1 + 4)/2
	// Output: [18.5 34 2.5]
}

// The EWC penalty with the ½ convention and its gradient.
func ExamplePenaltyGrad() {
	theta := []float32{1, 2}
	anchor := []float32{0, 0}
	F := []float32{1, 0.5}
	grad := make([]float32, 2)
	v, _ := fisher.PenaltyGrad(grad, theta, [][]float32{anchor}, [][]float32{F}, 2)
	fmt.Println(v, grad) // 2/2·(1·1 + 0.5·4) = 3; 2·(1·1, 0.5·2)
	// Output: 3 [2 2]
}
