// Package page renders ward's reports (the training report of
// pipelines/train/report, the feedback report of pipelines/feedback/report)
// the one way: a document written once as a list of blocks and rendered
// twice, as Markdown and as a self-contained HTML page with its PNG plots
// inlined, so that the two never say different things; the plots' common
// look; numbers written as people read them; files replaced atomically.
// Everything but WriteFile is pure: the same document gives the same bytes.
package page

import (
	"encoding/base64"
	"fmt"
	"html"
	"strings"

	"gonum.org/v1/plot"
)

// Doc is a report being written.
type Doc struct {
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
	draw  func() (*plot.Plot, error)
}

// New starts a document with its title (the page's only level-1 heading).
func New(title string) *Doc { return &Doc{title: title} }

// H adds a heading of level 2 or more.
func (d *Doc) H(level int, text string) {
	d.blocks = append(d.blocks, block{kind: heading, level: level, text: text})
}

// P adds a paragraph.
func (d *Doc) P(format string, args ...any) {
	d.blocks = append(d.blocks, block{kind: para, text: fmt.Sprintf(format, args...)})
}

// Table adds a table.
func (d *Doc) Table(head []string, rows [][]string) {
	d.blocks = append(d.blocks, block{kind: table, head: head, rows: rows})
}

// List adds a bulleted list.
func (d *Doc) List(items ...string) { d.blocks = append(d.blocks, block{kind: list, items: items}) }

// Figure adds a plot, drawn by draw when the document is rendered, kept
// as the PNG file beside the Markdown and inlined in the HTML.
func (d *Doc) Figure(file, caption string, draw func() (*plot.Plot, error)) {
	d.blocks = append(d.blocks, block{kind: figure, file: file, text: caption, draw: draw})
}

// Render draws the plots and renders the document: its Markdown, its
// HTML page, and the PNGs by file name.
func (d *Doc) Render() (markdown, page []byte, pngs map[string][]byte, err error) {
	pngs = map[string][]byte{}
	for _, bl := range d.blocks {
		if bl.kind != figure {
			continue
		}
		p, err := bl.draw()
		if err == nil {
			pngs[bl.file], err = PNG(p)
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("plot %s: %w", bl.file, err)
		}
	}
	return d.markdown(), d.html(pngs), pngs, nil
}

// markdown renders the document as Markdown; figures link to their PNG
// files beside it.
func (d *Doc) markdown() []byte {
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

// html renders the document as one HTML page with the PNGs inlined as
// data: URIs, so that the page is whole wherever it is copied or attached.
func (d *Doc) html(pngs map[string][]byte) []byte {
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
