// Package fsx holds the file-system helpers shared by golib's file writers.
package fsx

import (
	"os"
	"path/filepath"

	"github.com/exitnet/exitnet/golib/xerr"
)

// WriteAtomic runs write on a temporary file in path's directory, fsyncs it,
// makes it 0644 and renames it over path (then fsyncs the directory, best
// effort). On any failure the temporary file is removed and a previous file at
// path is left intact: readers never see a partial file. Errors are xerr IO
// errors naming the path.
func WriteAtomic(path string, write func(*os.File) error) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return xerr.IO("path: cannot create a temporary file next to %q: %v", path, err)
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if err := write(f); err != nil {
		return xerr.IO("path: writing %q: %v", path, err)
	}
	if err := f.Sync(); err != nil {
		return xerr.IO("path: fsync %q: %v", tmp, err)
	}
	if err := f.Chmod(0o644); err != nil {
		return xerr.IO("path: chmod %q: %v", tmp, err)
	}
	if err := f.Close(); err != nil {
		return xerr.IO("path: closing %q: %v", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return xerr.IO("path: renaming into %q: %v", path, err)
	}
	if d, derr := os.Open(dir); derr == nil {
		d.Sync() // best effort: makes the rename durable
		d.Close()
	}
	return nil
}
