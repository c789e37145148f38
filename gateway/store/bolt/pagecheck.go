package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"os"
)

// checkFile walks the pages of a bbolt file the way bbolt does when it
// opens it (the meta pages, then every branch and leaf page reachable from
// the root bucket, nested and inline buckets included), reading the file
// itself with bounds checks, and reports the first page that bbolt could
// not read safely: a page id or element outside its page or the file, a
// page that does not name itself, an unknown page type, a page reached
// twice. bbolt trusts these and panics on them — at Open, in goroutines of
// its own where no recover can reach. A file that does not exist passes
// (Open creates it). The walk reads every reachable page once, as bbolt's
// own scan of the free pages does at Open; key order and record contents
// are left to Check.
func checkFile(path string) error {
	data, release, err := mapFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer release()
	if len(data) == 0 {
		return nil // a new file: bbolt writes it
	}
	w, err := newPageWalker(data)
	if err != nil {
		return err
	}
	return w.walkBucketPage(w.root, "root")
}

const (
	pageHeaderSize   = 16
	elementSize      = 16 // branch and leaf elements alike
	bucketHeaderSize = 16
	metaSize         = 64
	metaChecksumAt   = 56

	flagBranch   = 0x01
	flagLeaf     = 0x02
	flagMeta     = 0x04
	flagFreelist = 0x10
	flagBucket   = 0x01 // a leaf element that is a bucket

	boltMagic   = 0xED0CDAED
	boltVersion = 2

	noFreelist = ^uint64(0)
)

type pageWalker struct {
	data     []byte
	pageSize uint64
	hwm      uint64 // pages below it are in use or free
	root     uint64
	seen     map[uint64]bool
}

type meta struct {
	pageSize, root, freelist, hwm, txid uint64
}

// readMeta decodes the meta at off, or an error if it is not a valid one.
func readMeta(data []byte, off uint64) (meta, error) {
	if off+pageHeaderSize+metaSize > uint64(len(data)) {
		return meta{}, errors.New("file too short for its meta pages")
	}
	p := data[off:]
	if binary.LittleEndian.Uint16(p[8:]) != flagMeta {
		return meta{}, errors.New("not a meta page")
	}
	m := p[pageHeaderSize : pageHeaderSize+metaSize]
	h := fnv.New64a()
	h.Write(m[:metaChecksumAt])
	switch {
	case binary.LittleEndian.Uint32(m[0:]) != boltMagic:
		return meta{}, errors.New("not a bbolt file (magic)")
	case binary.LittleEndian.Uint32(m[4:]) != boltVersion:
		return meta{}, errors.New("unsupported bbolt version")
	case binary.LittleEndian.Uint64(m[metaChecksumAt:]) != h.Sum64():
		return meta{}, errors.New("meta page checksum mismatch")
	}
	return meta{
		pageSize: uint64(binary.LittleEndian.Uint32(m[8:])),
		root:     binary.LittleEndian.Uint64(m[16:]),
		freelist: binary.LittleEndian.Uint64(m[32:]),
		hwm:      binary.LittleEndian.Uint64(m[40:]),
		txid:     binary.LittleEndian.Uint64(m[48:]),
	}, nil
}

func newPageWalker(data []byte) (*pageWalker, error) {
	m0, err0 := readMeta(data, 0)
	var m1 meta
	err1 := errors.New("no second meta page")
	if err0 == nil {
		m1, err1 = readMeta(data, m0.pageSize)
	} else {
		// bbolt looks for the second meta page at each possible page size.
		for i := 0; i <= 14; i++ {
			if m, err := readMeta(data, 1024<<i); err == nil {
				m1, err1 = m, nil
				break
			}
		}
	}
	// As bbolt: the valid meta with the higher transaction id.
	var m meta
	switch {
	case err0 == nil && (err1 != nil || m0.txid >= m1.txid):
		m = m0
	case err1 == nil:
		m = m1
	default:
		return nil, fmt.Errorf("no valid meta page: %v", err0)
	}
	if m.pageSize < 512 || m.pageSize > 1<<24 || m.pageSize&(m.pageSize-1) != 0 {
		return nil, fmt.Errorf("meta page: page size %d", m.pageSize)
	}
	if m.hwm < 2 || m.hwm > uint64(len(data))/m.pageSize {
		return nil, fmt.Errorf("meta page: %d pages in use, the file holds %d", m.hwm, uint64(len(data))/m.pageSize)
	}
	w := &pageWalker{data: data, pageSize: m.pageSize, hwm: m.hwm, root: m.root, seen: map[uint64]bool{}}
	if m.freelist != noFreelist {
		if err := w.checkFreelist(m.freelist); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// page returns the bytes of page id with its overflow, checked: in the file,
// below the high-water mark, naming itself.
func (w *pageWalker) page(id uint64, what string) (p []byte, flags uint16, count int, err error) {
	if id < 2 || id >= w.hwm {
		return nil, 0, 0, fmt.Errorf("%s: page %d out of range [2, %d)", what, id, w.hwm)
	}
	off := id * w.pageSize
	hdr := w.data[off : off+pageHeaderSize]
	if got := binary.LittleEndian.Uint64(hdr); got != id {
		return nil, 0, 0, fmt.Errorf("%s: page %d names itself %d", what, id, got)
	}
	flags = binary.LittleEndian.Uint16(hdr[8:])
	count = int(binary.LittleEndian.Uint16(hdr[10:]))
	overflow := uint64(binary.LittleEndian.Uint32(hdr[12:]))
	if id+overflow >= w.hwm {
		return nil, 0, 0, fmt.Errorf("%s: page %d runs past the pages in use (overflow %d)", what, id, overflow)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return nil, 0, 0, fmt.Errorf("%s: page %d reached twice", what, i)
		}
		w.seen[i] = true
	}
	return w.data[off : off+(overflow+1)*w.pageSize], flags, count, nil
}

func (w *pageWalker) checkFreelist(id uint64) error {
	p, flags, count, err := w.page(id, "freelist")
	if err != nil {
		return err
	}
	if flags != flagFreelist {
		return fmt.Errorf("freelist: page %d has type %#x", id, flags)
	}
	start := uint64(pageHeaderSize)
	n := uint64(count)
	if count == 0xFFFF {
		if len(p) < pageHeaderSize+8 {
			return fmt.Errorf("freelist: page %d too short", id)
		}
		n = binary.LittleEndian.Uint64(p[pageHeaderSize:])
		start += 8
	}
	if n > (uint64(len(p))-start)/8 {
		return fmt.Errorf("freelist: page %d lists %d pages, it holds at most %d", id, n, (uint64(len(p))-start)/8)
	}
	return nil
}

// walkBucketPage checks page id, the root (or a descendant) of a bucket,
// and everything below it.
func (w *pageWalker) walkBucketPage(id uint64, what string) error {
	p, flags, count, err := w.page(id, what)
	if err != nil {
		return err
	}
	return w.walkElements(p, flags, count, fmt.Sprintf("%s: page %d", what, id), true)
}

// walkElements checks the elements of a page image p (a page of the file
// or an inline bucket's) and recurses into what they point at.
func (w *pageWalker) walkElements(p []byte, flags uint16, count int, where string, inFile bool) error {
	if flags != flagBranch && flags != flagLeaf {
		return fmt.Errorf("%s: type %#x is neither branch nor leaf", where, flags)
	}
	if uint64(pageHeaderSize)+uint64(count)*elementSize > uint64(len(p)) {
		return fmt.Errorf("%s: %d elements do not fit", where, count)
	}
	if flags == flagBranch && !inFile {
		return fmt.Errorf("%s: an inline bucket with a branch page", where)
	}
	for i := 0; i < count; i++ {
		at := uint64(pageHeaderSize) + uint64(i)*elementSize
		e := p[at : at+elementSize]
		if flags == flagBranch {
			pos, ksize := uint64(binary.LittleEndian.Uint32(e[0:])), uint64(binary.LittleEndian.Uint32(e[4:]))
			child := binary.LittleEndian.Uint64(e[8:])
			if at+pos+ksize > uint64(len(p)) {
				return fmt.Errorf("%s: key %d outside the page", where, i)
			}
			if err := w.walkBucketPage(child, where); err != nil {
				return err
			}
			continue
		}
		eflags := binary.LittleEndian.Uint32(e[0:])
		pos := uint64(binary.LittleEndian.Uint32(e[4:]))
		ksize := uint64(binary.LittleEndian.Uint32(e[8:]))
		vsize := uint64(binary.LittleEndian.Uint32(e[12:]))
		end := at + pos + ksize + vsize
		if end > uint64(len(p)) || end < at {
			return fmt.Errorf("%s: key or value %d outside the page", where, i)
		}
		if eflags&flagBucket == 0 {
			continue
		}
		key := p[at+pos : at+pos+ksize]
		v := p[at+pos+ksize : end]
		name := fmt.Sprintf("bucket %q", printable(key))
		if len(v) < bucketHeaderSize {
			return fmt.Errorf("%s: %s: header too short", where, name)
		}
		root := binary.LittleEndian.Uint64(v)
		if root != 0 {
			if err := w.walkBucketPage(root, name); err != nil {
				return err
			}
			continue
		}
		inline := v[bucketHeaderSize:]
		if len(inline) < pageHeaderSize {
			return fmt.Errorf("%s: %s: inline page too short", where, name)
		}
		iflags := binary.LittleEndian.Uint16(inline[8:])
		icount := int(binary.LittleEndian.Uint16(inline[10:]))
		if err := w.walkElements(inline, iflags, icount, name+" (inline)", false); err != nil {
			return err
		}
	}
	return nil
}
