package distill_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/exitnet/exitnet/golib/distill"
)

// The KD loss of two 1×2 rows at T = 1: q = softmax(0, 0) = (½, ½),
// p = softmax(0, ln 3) = (¼, ¾), KL(q‖p) = ½·ln(2) + ½·ln(2/3) = ½·ln(4/3).
func ExampleKDLoss() {
	student := []float32{0, 1.0986123} // (0, ln 3)
	teacher := []float32{0, 0}
	grad := make([]float32, 2)
	loss, err := distill.KDLoss(grad, student, teacher, 1, 2, 1)
	if err != nil {
		panic(err)
	}
	fmt.Printf("loss %.5f, grad %.4f\n", loss, grad)
	// Output: loss 0.14384, grad [-0.2500 0.2500]
}

func ExampleTargetWriter() {
	dir, _ := os.MkdirTemp("", "targets")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "targets.arrow")

	w, _ := distill.NewTargetWriter(1, 3) // 1 exit, 3 classes
	_ = w.Add(0, []int64{42, 7}, []float32{1, 2, 3, 4, 5, 6})
	if err := w.Save(path); err != nil {
		panic(err)
	}
	t, err := distill.OpenTargets(path)
	if err != nil {
		panic(err)
	}
	defer t.Close()
	dst := make([]float32, 3)
	_ = t.Gather(dst, []int64{7}, 0)
	fmt.Println(t.IDs(), dst)
	// Output: [7 42] [4 5 6]
}
