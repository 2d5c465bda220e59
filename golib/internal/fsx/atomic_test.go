package fsx

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/exitnet/exitnet/golib/xerr"
)

func TestWriteAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "t.arrow")
	if err := os.WriteFile(path, []byte("previous contents"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	// A write that fails half-way leaves the previous file intact and no temporary behind.
	err := WriteAtomic(path, func(f *os.File) error {
		f.Write([]byte("ARROW1 partial"))
		return errors.New("disk full")
	})
	if xerr.CodeOf(err) != xerr.StatusIO || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("got %v, want an IO error naming the cause", err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("previous file changed")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Fatalf("directory holds %d entries, want 1", len(ents))
	}
	// Writing into a missing directory is an IO error.
	if err := WriteAtomic(filepath.Join(dir, "missing", "t.arrow"), func(*os.File) error { return nil }); xerr.CodeOf(err) != xerr.StatusIO {
		t.Fatalf("missing directory: %v", err)
	}
}
