package image

import (
	"fmt"
	"io"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// progressBar draws one push's progress on a terminal line, from the
// updates go-containerregistry sends (it closes the channel when done).
type progressBar struct {
	updates chan v1.Update
	done    chan struct{}
}

func newProgressBar(w io.Writer, label string) *progressBar {
	b := &progressBar{updates: make(chan v1.Update, 64), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		last := -1
		var u v1.Update
		for u = range b.updates {
			if u.Error != nil || u.Total <= 0 {
				continue
			}
			pct := int(100 * u.Complete / u.Total)
			if pct == last {
				continue
			}
			last = pct
			fill := pct * 30 / 100
			fmt.Fprintf(w, "\r%-16s [%s%s] %3d%% %6.1f/%.1f MiB", label,
				strings.Repeat("=", fill), strings.Repeat(" ", 30-fill), pct,
				float64(u.Complete)/(1<<20), float64(u.Total)/(1<<20))
		}
		if last >= 0 {
			fmt.Fprintln(w)
		}
	}()
	return b
}

// wait returns when the push has ended and the bar is drawn.
func (b *progressBar) wait() { <-b.done }
