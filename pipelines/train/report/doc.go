package report

import (
	"encoding/base64"
	"fmt"
	"html"
	"strings"
)

// doc is a report as a list of blocks, written once and rendered twice:
// as Markdown (report.md) and as a self-contained HTML page (report.html),
// so that the two never say different things.
type doc struct {
	title  string
	blocks []block
}

type blockKind int

const (
	heading blockKind = iota
	para
	table
	list
	figure
)

type block struct {
	kind  blockKind
	level int      // heading
	text  string   // heading, para; figure: the caption
	head  []string // table
	rows  [][]string
	items []string // list
	file  string   // figure: the PNG's file name
}

func (d *doc) h(level int, text string) {
	d.blocks = append(d.blocks, block{kind: heading, level: level, text: text})
}

func (d *doc) p(format string, args ...any) {
	d.blocks = append(d.blocks, block{kind: para, text: fmt.Sprintf(format, args...)})
}

func (d *doc) table(head []string, rows [][]string) {
	d.blocks = append(d.blocks, block{kind: table, head: head, rows: rows})
}

func (d *doc) list(items ...string) { d.blocks = append(d.blocks, block{kind: list, items: items}) }

func (d *doc) figure(file, caption string) {
	d.blocks = append(d.blocks, block{kind: figure, file: file, text: caption})
}

// markdown renders the report as Markdown; figures link to their PNG
// files beside it.
func (d *doc) markdown() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n", d.title)
	for _, bl := range d.blocks {
		b.WriteString("\n")
		switch bl.kind {
		case heading:
			fmt.Fprintf(&b, "%s %s\n", strings.Repeat("#", bl.level), bl.text)
		case para:
			fmt.Fprintf(&b, "%s\n", bl.text)
		case table:
			cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
			row := func(cells []string) {
				b.WriteString("|")
				for _, c := range cells {
					fmt.Fprintf(&b, " %s |", cell(c))
				}
				b.WriteString("\n")
			}
			row(bl.head)
			b.WriteString("|")
			for range bl.head {
				b.WriteString(" --- |")
			}
			b.WriteString("\n")
			for _, r := range bl.rows {
				row(r)
			}
		case list:
			for _, it := range bl.items {
				fmt.Fprintf(&b, "- %s\n", it)
			}
		case figure:
			fmt.Fprintf(&b, "![%s](%s)\n", bl.text, bl.file)
		}
	}
	return []byte(b.String())
}

const style = `body{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222;line-height:1.45}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}
th{background:#f3f3f3}td{font-variant-numeric:tabular-nums}figure{margin:1em 0}figcaption{color:#555;font-size:.9em}
img{max-width:100%;border:1px solid #eee}`

// html renders the report as one HTML page with the PNGs inlined as data:
// URIs, so that the page is whole wherever it is copied or attached.
func (d *doc) html(pngs map[string][]byte) []byte {
	var b strings.Builder
	esc := html.EscapeString
	fmt.Fprintf(&b, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>%s</title>\n<style>\n%s\n</style>\n</head>\n<body>\n<h1>%s</h1>\n", esc(d.title), style, esc(d.title))
	for _, bl := range d.blocks {
		switch bl.kind {
		case heading:
			fmt.Fprintf(&b, "<h%d>%s</h%d>\n", bl.level, esc(bl.text), bl.level)
		case para:
			fmt.Fprintf(&b, "<p>%s</p>\n", esc(bl.text))
		case table:
			b.WriteString("<table>\n<tr>")
			for _, c := range bl.head {
				fmt.Fprintf(&b, "<th>%s</th>", esc(c))
			}
			b.WriteString("</tr>\n")
			for _, r := range bl.rows {
				b.WriteString("<tr>")
				for _, c := range r {
					fmt.Fprintf(&b, "<td>%s</td>", esc(c))
				}
				b.WriteString("</tr>\n")
			}
			b.WriteString("</table>\n")
		case list:
			b.WriteString("<ul>\n")
			for _, it := range bl.items {
				fmt.Fprintf(&b, "<li>%s</li>\n", esc(it))
			}
			b.WriteString("</ul>\n")
		case figure:
			fmt.Fprintf(&b, "<figure><img alt=\"%s\" src=\"data:image/png;base64,%s\"><figcaption>%s</figcaption></figure>\n",
				esc(bl.text), base64.StdEncoding.EncodeToString(pngs[bl.file]), esc(bl.text))
		}
	}
	b.WriteString("</body>\n</html>\n")
	return []byte(b.String())
}
