package main

/*
#include "shim.h"
*/
import "C"

import (
	"unsafe"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"

	"github.com/exitnet/exitnet/golib/arrowx"
	"github.com/exitnet/exitnet/golib/fisher"
	"github.com/exitnet/exitnet/golib/xerr"
)

// Files: an accumulator (sums and count) and an EWC state (layout, Fishers,
// anchors, metadata) saved and loaded through golib/fisher's checksummed format.

// cStrings copies n C strings (names) into Go.
func cStrings(p **C.char, n int, name string) ([]string, error) {
	if n == 0 {
		return nil, nil
	}
	if p == nil {
		return nil, xerr.Invalid("%s: NULL pointer", name)
	}
	out := make([]string, n)
	for i, s := range unsafe.Slice(p, n) {
		v, err := goString(s, name)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

//export exitnet_fisher_state_save
func exitnet_fisher_state_save(path *C.char, names **C.char, ndims *C.int64_t, dims *C.int64_t, nParams C.int64_t,
	fA *C.struct_ArrowArray, fS *C.struct_ArrowSchema, nFishers C.int,
	aA *C.struct_ArrowArray, aS *C.struct_ArrowSchema, nAnchors C.int,
	metaKeys **C.char, metaValues **C.char, nMeta C.int) C.int {
	return run("exitnet_fisher_state_save", func() error {
		fargs, err1 := fisherStructArgs(fA, fS, int(nFishers), "fishers")
		aargs, err2 := fisherStructArgs(aA, aS, int(nAnchors), "anchors")
		if err1 != nil {
			releaseArgs(aargs...)
			return err1
		}
		if err2 != nil {
			releaseArgs(fargs...)
			return err2
		}
		ins, release, err := importAll(append(fargs, aargs...)...)
		defer release()
		if err != nil {
			return err
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		layout, err := fisherLayout(names, ndims, dims, nParams)
		if err != nil {
			return err
		}
		fs, err := float32Inputs(ins[:len(fargs)], "fishers")
		if err != nil {
			return err
		}
		as, err := float32Inputs(ins[len(fargs):], "anchors")
		if err != nil {
			return err
		}
		if nMeta < 0 {
			return xerr.Invalid("n_meta: %d", int(nMeta))
		}
		keys, err := cStrings(metaKeys, int(nMeta), "meta_keys")
		if err != nil {
			return err
		}
		vals, err := cStrings(metaValues, int(nMeta), "meta_values")
		if err != nil {
			return err
		}
		meta := make(map[string]string, len(keys))
		for i, k := range keys {
			if _, dup := meta[k]; dup {
				return xerr.Invalid("meta_keys: key %q appears twice (positions are %d and an earlier one)", k, i)
			}
			meta[k] = vals[i]
		}
		return fisher.SaveState(p, &fisher.State{Layout: layout, Fishers: fs, Anchors: as, Meta: meta})
	}, append(argsOrNone(fisherStructArgs(fA, fS, int(nFishers), "fishers")), argsOrNone(fisherStructArgs(aA, aS, int(nAnchors), "anchors"))...)...)
}

//export exitnet_fisher_state_load
func exitnet_fisher_state_load(outA *C.struct_ArrowArray, outS *C.struct_ArrowSchema, path *C.char) C.int {
	return run("exitnet_fisher_state_load", func() error {
		if err := checkOut(outA, outS, "out"); err != nil {
			return err
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		st, err := fisher.LoadState(p)
		if err != nil {
			return err
		}
		// Rebuild the record on the C heap (the decoded buffers live in Go memory).
		rec, err := st.Record()
		if err != nil {
			return err
		}
		defer rec.Release()
		cols := make([]arrow.Array, rec.NumCols())
		for i := range cols {
			if f64, ok := rec.Column(i).(*array.Float64); ok { // "sums" of an accumulator file
				arr, view := newFloat64(f64.Len())
				copy(view, f64.Float64Values())
				cols[i] = arr
				continue
			}
			vals := rec.Column(i).(*array.Float32).Float32Values()
			arr, dst, err := arrowx.NewFloat32(cmem, len(vals), "out")
			if err != nil {
				for _, c := range cols[:i] {
					c.Release()
				}
				return err
			}
			copy(dst, vals)
			cols[i] = arr
		}
		out := array.NewRecordBatch(rec.Schema(), cols, rec.NumRows())
		for _, c := range cols {
			c.Release()
		}
		exportRecord(out, outA, outS)
		return nil
	})
}

//export exitnet_fisher_save
func exitnet_fisher_save(h *C.exitnet_fisher, path *C.char) C.int {
	return run("exitnet_fisher_save", func() error {
		fh, err := getFisher(h, "fisher")
		if err != nil {
			return err
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		fh.mu.Lock()
		defer fh.mu.Unlock()
		return fh.acc.Save(p)
	})
}

//export exitnet_fisher_load
func exitnet_fisher_load(out **C.exitnet_fisher, path *C.char) C.int {
	return run("exitnet_fisher_load", func() error {
		if out == nil {
			return xerr.Invalid("out: NULL pointer")
		}
		p, err := goString(path, "path")
		if err != nil {
			return err
		}
		acc, err := fisher.LoadAccumulator(p)
		if err != nil {
			return err
		}
		*out = (*C.exitnet_fisher)(putHandle(&fisherHandle{acc: acc}))
		return nil
	})
}
