package fisher

import (
	"encoding/json"
	"strconv"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Save writes the accumulator to path as a state file (see State) holding its
// raw sums (column "sums"), its Fisher F = S/N as "fisher/0" when N > 0, and
// the metadata n_samples, label_mode, granularity and normalisation (JSON
// texts). The write is atomic. LoadAccumulator restores it exactly.
func (a *Accumulator) Save(path string) error {
	if err := a.usable(); err != nil {
		return err
	}
	q := func(v string) string { b, _ := json.Marshal(v); return string(b) }
	st := &State{
		Layout: a.layout,
		Sums:   a.sums,
		Meta: map[string]string{
			"n_samples":     strconv.FormatInt(a.count, 10),
			"label_mode":    q(a.labelMode),
			"granularity":   q(a.Granularity()),
			"normalisation": q(a.Normalisation()),
		},
	}
	if a.count > 0 {
		f := make([]float32, len(a.sums))
		if err := a.Compute(f); err != nil {
			return err
		}
		st.Fishers = [][]float32{f}
	}
	return SaveState(path, st)
}

// LoadAccumulator reads an accumulator written by Save (IO error if the file
// is not one: missing sums, count or label mode).
func LoadAccumulator(path string) (*Accumulator, error) {
	st, err := LoadState(path)
	if err != nil {
		return nil, err
	}
	if st.Sums == nil {
		return nil, xerr.IO("path: %q holds Fishers but no accumulator sums (written by save_state, not by an accumulator)", path)
	}
	var mode string
	if err := json.Unmarshal([]byte(st.Meta["label_mode"]), &mode); err != nil || !ValidLabelMode(mode) {
		return nil, xerr.IO("path: %q: bad label_mode metadata %q", path, st.Meta["label_mode"])
	}
	n, err := strconv.ParseInt(st.Meta["n_samples"], 10, 64)
	if err != nil || n < 0 {
		return nil, xerr.IO("path: %q: bad n_samples metadata %q", path, st.Meta["n_samples"])
	}
	acc, err := New(st.Layout, mode)
	if err != nil {
		return nil, xerr.IO("path: %q: %v", path, err)
	}
	if err := acc.SetState(st.Sums, n); err != nil {
		return nil, xerr.IO("path: %q: %v", path, err)
	}
	return acc, nil
}
