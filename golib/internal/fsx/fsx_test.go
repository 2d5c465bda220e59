package fsx

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/exitnet/exitnet/golib/xerr"
)

func TestReadRefusesNonRegularWithoutBlocking(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	for _, p := range []string{fifo, "/dev/zero", t.TempDir()} {
		done := make(chan error, 1)
		go func() { _, err := ReadFile(p, "model", 1<<30); done <- err }()
		select {
		case err := <-done:
			if xerr.CodeOf(err) != xerr.StatusIO {
				t.Errorf("%s: got %v, want an IO error", p, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: ReadFile blocked", p)
		}
		if _, _, err := MapFile(p, "target", 1<<30); xerr.CodeOf(err) != xerr.StatusIO {
			t.Errorf("MapFile %s: got %v", p, err)
		}
	}
}

func TestReadSizeLimit(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	os.WriteFile(p, make([]byte, 100), 0o644)
	if _, err := ReadFile(p, "model", 99); xerr.CodeOf(err) != xerr.StatusIO {
		t.Fatalf("got %v", err)
	}
	if b, err := ReadFile(p, "model", 100); err != nil || len(b) != 100 {
		t.Fatalf("got %d bytes, %v", len(b), err)
	}
}

func TestSealVerifyDetectsEveryByteFlip(t *testing.T) {
	data := []byte("head " + ChecksumPlaceholder + " body bytes 0123456789 " + ChecksumPlaceholder + " tail")
	if err := Seal(data); err != nil {
		t.Fatal(err)
	}
	if k, err := Verify(data); err != nil || k != CRC32 {
		t.Fatalf("sealed: %v %v", k, err)
	}
	for i := range data {
		for _, x := range []byte{1, 0x80, 0xff} {
			d := bytes.Clone(data)
			d[i] ^= x
			if k, err := Verify(d); err == nil && k == CRC32 {
				t.Fatalf("flip %#x at %d not detected", x, i)
			}
		}
	}
	if err := Seal([]byte("no marker")); err == nil {
		t.Fatal("Seal without slots succeeded")
	}
}

func TestWriteCleansStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.arrow")
	// A dead writer: pid 2^22+1 is above Linux's default pid_max.
	dead := filepath.Join(dir, ".x.arrow.tmp-4194305-123")
	live := filepath.Join(dir, ".x.arrow.tmp-"+strconv.Itoa(os.Getppid())+"-456")
	oldGo := filepath.Join(dir, ".x.arrow.tmp-789")
	freshGo := filepath.Join(dir, ".x.arrow.tmp-790")
	other := filepath.Join(dir, ".y.arrow.tmp-4194305-1")
	for _, p := range []string{dead, live, oldGo, freshGo, other} {
		os.WriteFile(p, []byte("partial"), 0o600)
	}
	past := time.Now().Add(-2 * time.Hour)
	os.Chtimes(oldGo, past, past)
	if err := WriteAtomic(path, func(f *os.File) error { _, err := f.Write([]byte("ok")); return err }); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]bool{dead: false, live: true, oldGo: false, freshGo: true, other: true} {
		if _, err := os.Stat(p); (err == nil) != want {
			t.Errorf("%s: exists=%v, want %v", filepath.Base(p), err == nil, want)
		}
	}
}
