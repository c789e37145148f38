package policy

import (
	"fmt"
	"io/fs"
	"path"
	"strings"
	"testing/fstest"
)

// maxLinkHops bounds a chain of links (as the kernel's ELOOP does).
const maxLinkHops = 16

// linkInside refuses a symbolic link of a policy folder that leaves it: an
// absolute target, or a relative one that climbs above the folder's top,
// directly or through further links on its way (resolved step by step, as
// the kernel would). A policy folder may be a candidate's (xborder policy
// impact --candidate DIR), and os.DirFS follows links wherever they point,
// so a link would read a file of the host (a key, another's data) into a
// bundle, its digest and its reports. A link that stays inside is read as
// its target. A link that cannot be read is refused.
func linkInside(fsys fs.FS, name string) error {
	hops := 0
	if _, err := resolveInside(fsys, name, &hops); err != nil {
		return fmt.Errorf("policy: read: %s: %w", name, err)
	}
	return nil
}

// LinkInside is linkInside for readers of a policy folder outside this
// package (the worker's loader): nil when name, a symbolic link, stays
// inside fsys.
func LinkInside(fsys fs.FS, name string) error { return linkInside(fsys, name) }

var errLinkOut = fmt.Errorf("a symbolic link out of the policy folder is refused")

// resolveInside returns the real path of name inside fsys, or errLinkOut.
func resolveInside(fsys fs.FS, name string, hops *int) (string, error) {
	parts := strings.Split(name, "/")
	cur := "" // resolved so far: real folders only, so ".." is lexical from here
	for i, part := range parts {
		switch part {
		case "", ".":
			continue
		case "..":
			if cur == "" {
				return "", errLinkOut
			}
			cur = path.Dir(cur)
			if cur == "." {
				cur = ""
			}
			continue
		}
		next := path.Join(cur, part)
		fi, err := fs.Lstat(fsys, next)
		if err != nil {
			// Nothing there: the rest cannot be opened either.
			return path.Join(append([]string{next}, parts[i+1:]...)...), nil
		}
		if fi.Mode()&fs.ModeSymlink == 0 {
			cur = next
			continue
		}
		if *hops++; *hops > maxLinkHops {
			return "", errLinkOut
		}
		target, err := fs.ReadLink(fsys, next)
		if err != nil {
			return "", fmt.Errorf("a symbolic link that cannot be read is refused")
		}
		if target == "" || strings.HasPrefix(target, "/") || strings.Contains(target, "\\") {
			return "", errLinkOut
		}
		rest := strings.Join(append([]string{cur, target}, parts[i+1:]...), "/")
		return resolveInside(fsys, strings.TrimPrefix(rest, "/"), hops)
	}
	return cur, nil
}

// regularFile refuses a policy file that is not a regular file (through
// its links): reading a named pipe waits for a writer forever, and a
// device has no end.
func regularFile(fsys fs.FS, name string) error {
	fi, err := fs.Stat(fsys, name)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("policy: read: %s: not a regular file (a pipe, a device or a socket is refused)", name)
	}
	return nil
}

// Snapshot reads every regular file of a policy folder into memory (a
// link is read as its target and must stay inside, as for Compile), so
// that what is digested, tested and compiled is one set of files even if
// the folder changes meanwhile. Hidden folders are skipped, as Compile
// skips them.
func Snapshot(fsys fs.FS) (fs.FS, error) {
	out := fstest.MapFS{}
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		if d.Type()&fs.ModeSymlink != 0 {
			if err := linkInside(fsys, p); err != nil {
				return err
			}
			st, err := fs.Stat(fsys, p)
			if err != nil {
				return err
			}
			if !st.Mode().IsRegular() {
				return nil
			}
		} else if !d.Type().IsRegular() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		out[p] = &fstest.MapFile{Data: b, Mode: 0o444}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("policy: read: %w", err)
	}
	return out, nil
}
