// Package fsx is exitnet's one file layer (docs/file-format.md): every reader
// opens regular files only (ReadFile, MapFile), checks the whole-file checksum
// and the metadata convention and decodes with a bounded allocator (Open), and
// every writer seals and writes atomically (WriteSealed), cleaning the
// temporary files a crashed writer left behind.
package fsx

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/exitnet/exitnet/golib/xerr"
)

// Temporary files are named "."+base+".tmp-<pid>-<random>" (Python's
// exitnet._io.atomic_write uses the same pattern), so the next write to the
// same path can tell a crashed writer's leftovers from a live one's.
func tempPrefix(base string) string { return "." + base + ".tmp-" }

// legacyStaleAge is how old a temporary file of the earlier naming schemes
// (no pid) must be before the write path removes it.
const legacyStaleAge = time.Hour

// cleanStale removes the temporary files of earlier writes to dir/base whose
// writer is gone: named with a pid that no longer runs on this host, or (for
// names without a pid) older than legacyStaleAge. Best effort, never fails.
func cleanStale(dir, base string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	pre := tempPrefix(base)
	pyLegacy := "." + base + "."
	for _, e := range entries {
		name := e.Name()
		var stale bool
		switch {
		case strings.HasPrefix(name, pre):
			rest := name[len(pre):]
			if i := strings.IndexByte(rest, '-'); i > 0 {
				if pid, err := strconv.Atoi(rest[:i]); err == nil && pid > 0 {
					stale = pid != os.Getpid() && !processAlive(pid)
					break
				}
			}
			stale = olderThan(e, legacyStaleAge) // Go's earlier ".base.tmp-<random>"
		case strings.HasPrefix(name, pyLegacy) && strings.HasSuffix(name, ".tmp"):
			stale = olderThan(e, legacyStaleAge) // Python's earlier ".base.<random>.tmp"
		}
		if stale && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

func olderThan(e os.DirEntry, age time.Duration) bool {
	info, err := e.Info()
	return err == nil && time.Since(info.ModTime()) > age
}

// WriteAtomic runs write on a temporary file in path's directory, fsyncs it,
// makes it 0644 and renames it over path (then fsyncs the directory, best
// effort). On any failure the temporary file is removed and a previous file at
// path is left intact: readers never see a partial file. Stale temporary files
// of earlier, crashed writes to path are removed first. Errors are xerr IO
// errors naming the path.
func WriteAtomic(path string, write func(*os.File) error) error {
	return writeAtomic(path, write, false)
}

// WriteSealed is WriteAtomic for an exitnet file: after write, the checksum
// slots (ChecksumPlaceholder in the schema metadata) are filled (see Seal).
func WriteSealed(path string, write func(*os.File) error) error {
	return writeAtomic(path, write, true)
}

func writeAtomic(path string, write func(*os.File) error, seal bool) (err error) {
	if path == "" {
		return xerr.Invalid("path: empty")
	}
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	cleanStale(dir, base)
	f, err := os.CreateTemp(dir, tempPrefix(base)+strconv.Itoa(os.Getpid())+"-*")
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
		if xerr.CodeOf(err) != xerr.StatusInternal {
			return err
		}
		return xerr.IO("path: writing %q: %v", path, err)
	}
	if seal {
		if err := sealFile(f); err != nil {
			return xerr.Wrap(err, "path: %q", path)
		}
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

// sealFile seals the file written so far (mapped read-write where possible).
func sealFile(f *os.File) error {
	st, err := f.Stat()
	if err != nil {
		return xerr.IO("stat: %v", err)
	}
	if data, unmap, ok := mmapRW(f, st.Size()); ok {
		err := Seal(data)
		if uerr := unmap(); err == nil && uerr != nil {
			return xerr.IO("sealing: %v", uerr)
		}
		return err
	}
	data := make([]byte, st.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return xerr.IO("reading back: %v", err)
	}
	if err := Seal(data); err != nil {
		return err
	}
	if _, err := f.WriteAt(data, 0); err != nil {
		return xerr.IO("sealing: %v", err)
	}
	return nil
}
