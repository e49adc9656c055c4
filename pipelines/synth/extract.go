package synth

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/wardml/ward/models"
)

// encodeCSV writes a header line and the rows, each cell in the canonical
// text of its column's type (what models.Column.ParseText reads back).
func encodeCSV(w io.Writer, t *table, rows []row, delimiter rune) error {
	cw := csv.NewWriter(w)
	cw.Comma = delimiter
	rec := make([]string, len(t.columns))
	for i, c := range t.columns {
		rec[i] = c.Name
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	for _, r := range rows {
		for i, c := range r {
			if c.bad {
				rec[i] = c.raw
			} else {
				rec[i] = c.v.Format(t.columns[i].Type)
			}
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// parquetNode is the Parquet type of a column: dates as DATE (days),
// timestamps as TIMESTAMP(ms, UTC), optional unless the column is required.
func parquetNode(c models.Column) parquet.Node {
	var n parquet.Node
	switch c.Type {
	case models.String:
		n = parquet.String()
	case models.Int:
		n = parquet.Int(64)
	case models.Float:
		n = parquet.Leaf(parquet.DoubleType)
	case models.Bool:
		n = parquet.Leaf(parquet.BooleanType)
	case models.Date:
		n = parquet.Date()
	case models.Timestamp:
		n = parquet.Timestamp(parquet.Millisecond)
	}
	if !c.Required {
		n = parquet.Optional(n)
	}
	return n
}

// parquetSchema returns the schema of a table's Parquet files and, for each
// column of the table, its position among the file's columns (Parquet
// orders a group's fields by name; readers match them by name).
func parquetSchema(t *table) (*parquet.Schema, []int) {
	group := parquet.Group{}
	names := make([]string, len(t.columns))
	for i, c := range t.columns {
		group[c.Name] = parquetNode(c)
		names[i] = c.Name
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	pos := make([]int, len(names))
	for i, n := range names {
		pos[i], _ = slices.BinarySearch(sorted, n)
	}
	return parquet.NewSchema(t.name, group), pos
}

// encodeParquet writes the rows as one Parquet file with the same columns
// and types as the contract declares.
func encodeParquet(w io.Writer, t *table, rows []row) error {
	schema, pos := parquetSchema(t)
	pw := parquet.NewWriter(w, schema,
		parquet.Compression(&parquet.Snappy),
		// The default names the library's build; the bytes must depend on
		// the seed and flags alone.
		parquet.CreatedBy("ward synth", "1", "-"))
	buf := make([]parquet.Row, 0, 256)
	flush := func() error {
		if _, err := pw.WriteRows(buf); err != nil {
			return err
		}
		buf = buf[:0]
		return nil
	}
	for _, r := range rows {
		pr := make(parquet.Row, len(r))
		for i, c := range r {
			col := t.columns[i]
			if c.bad {
				return fmt.Errorf("column %s: %q cannot be written to a typed Parquet column", col.Name, c.raw)
			}
			def := 0
			if !col.Required {
				def = 1
			}
			var v parquet.Value
			switch {
			case c.v.Null:
				v, def = parquet.NullValue(), 0
			case col.Type == models.String:
				v = parquet.ByteArrayValue([]byte(c.v.Str))
			case col.Type == models.Float:
				v = parquet.DoubleValue(c.v.Num)
			case col.Type == models.Bool:
				v = parquet.BooleanValue(c.v.Num != 0)
			case col.Type == models.Date:
				v = parquet.Int32Value(int32(c.v.Num))
			case col.Type == models.Timestamp:
				v = parquet.Int64Value(int64(c.v.Num * 1000))
			default:
				v = parquet.Int64Value(int64(c.v.Num))
			}
			pr[pos[i]] = v.Level(0, def, pos[i])
		}
		buf = append(buf, pr)
		if len(buf) == cap(buf) {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	return pw.Close()
}

// fileName is the name of a table's extract for a month, before the
// encryption suffix: cases_2025-07.csv, cases_2025-07_correction.csv.
func fileName(t *table, month string, correction bool, format string) string {
	var b strings.Builder
	b.WriteString(t.name + "_" + month)
	if correction {
		b.WriteString("_correction")
	}
	b.WriteString("." + format)
	return b.String()
}
