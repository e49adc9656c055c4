package contract

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Limits bound what one extract may cost to read, whatever its sender
// meant: a small file must not decompress or unpack into gigabytes.
type Limits struct {
	// MaxPlaintextBytes caps a file's decrypted and decompressed bytes
	// (default 1 GiB).
	MaxPlaintextBytes ByteSize `yaml:"max_plaintext_bytes"`
	// MaxCellBytes caps one cell (default 64 KiB).
	MaxCellBytes ByteSize `yaml:"max_cell_bytes"`
	// MaxPageBytes caps one Parquet page, uncompressed, and the file's
	// footer (default 64 MiB).
	MaxPageBytes ByteSize `yaml:"max_page_bytes"`
}

// The limits' defaults.
const (
	DefaultMaxPlaintextBytes ByteSize = 1 << 30
	DefaultMaxCellBytes      ByteSize = 64 << 10
	DefaultMaxPageBytes      ByteSize = 64 << 20
)

func (l *Limits) normalize() error {
	for _, s := range []struct {
		v    *ByteSize
		def  ByteSize
		name string
	}{{&l.MaxPlaintextBytes, DefaultMaxPlaintextBytes, "max_plaintext_bytes"}, {&l.MaxCellBytes, DefaultMaxCellBytes, "max_cell_bytes"}, {&l.MaxPageBytes, DefaultMaxPageBytes, "max_page_bytes"}} {
		if *s.v == 0 {
			*s.v = s.def
		}
		if *s.v < 0 {
			return fmt.Errorf("inbound: limits: %s %d is negative", s.name, *s.v)
		}
	}
	return nil
}

// ByteSize is a number of bytes, written 1048576, "64KiB", "1GiB" or "100MB".
type ByteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1}}

// ParseByteSize reads a size: a count of bytes, with an optional unit.
func ParseByteSize(s string) (ByteSize, error) {
	t := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n < 0 || (n > 0 && mult > (1<<62)/n) {
		return 0, fmt.Errorf("size %q: want a count of bytes with an optional unit, like 65536, 64KiB, 256MiB or 1GiB", s)
	}
	return ByteSize(n * mult), nil
}

func (b ByteSize) String() string {
	for i := 3; i >= 0; i-- {
		if u := byteUnits[i]; b > 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + " " + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + " bytes"
}

// UnmarshalYAML reads a size from a number or its text form.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseByteSize(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*b = v
	return nil
}
