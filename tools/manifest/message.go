package manifest

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
)

// The trailers of every deploy and rollback commit.
const (
	TrailerHospital       = "Ward-Hospital"
	TrailerVersion        = "Ward-Version"
	TrailerDigest         = "Ward-Digest"
	TrailerPreviousDigest = "Ward-Previous-Digest"
)

// Trailer is one "Key: value" line of a commit message's last paragraph.
type Trailer struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

var (
	trailerLine = regexp.MustCompile(`^([A-Za-z0-9][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$`)
	// revertLine is what git revert writes, and ward rollback too.
	revertLine = regexp.MustCompile(`(?m)^This reverts commit ([0-9a-f]{7,64})\b`)
)

// ParseTrailers reads the trailers of a commit message the way
// `git interpret-trailers --parse` does for messages whose last paragraph
// is all trailers: that paragraph (not the subject), each line "Key: value"
// or a continuation line starting with white space. Anything else means
// the message has no trailers.
func ParseTrailers(msg string) []Trailer {
	paras := strings.Split(strings.TrimSpace(strings.ReplaceAll(msg, "\r\n", "\n")), "\n\n")
	if len(paras) < 2 {
		return nil
	}
	var out []Trailer
	for _, line := range strings.Split(strings.TrimSpace(paras[len(paras)-1]), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if (line[0] == ' ' || line[0] == '\t') && len(out) > 0 {
			last := &out[len(out)-1]
			last.Value = strings.TrimSpace(last.Value + " " + strings.TrimSpace(line))
			continue
		}
		m := trailerLine.FindStringSubmatch(line)
		if m == nil {
			return nil
		}
		out = append(out, Trailer{Key: m[1], Value: strings.TrimSpace(m[2])})
	}
	return out
}

// trailer returns the last value of key (case-insensitive, as git does).
func trailer(ts []Trailer, key string) string {
	v := ""
	for _, t := range ts {
		if strings.EqualFold(t.Key, key) {
			v = t.Value
		}
	}
	return v
}

// reverted returns the commit a message says it reverts, or "".
func reverted(msg string) string {
	m := revertLine.FindStringSubmatch(msg)
	if m == nil {
		return ""
	}
	return m[1]
}

func subject(msg string) string {
	s, _, _ := strings.Cut(strings.TrimSpace(msg), "\n")
	return strings.TrimSpace(s)
}

func deploySubject(r Release) string {
	return fmt.Sprintf("deploy(%s): %s", r.Hospital, r.Version)
}

// deployMessage is the message of a deploy commit; forced names the
// rollback that --force overrode, if any.
// downgrade, when not "", is the Ward-Allow-Downgrade trailer's value.
func deployMessage(r Release, forced *Rejection, downgrade string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nPin %s.\n", deploySubject(r), r.Image)
	if len(r.Metrics) > 0 {
		b.WriteString("Validation metrics:")
		for _, m := range slices.Sorted(maps.Keys(r.Metrics)) {
			fmt.Fprintf(&b, " %s %g", m, r.Metrics[m])
		}
		b.WriteString(".\n")
	}
	if forced != nil {
		fmt.Fprintf(&b, "Deployed with --force: %s was rolled back by %s.\n", forced.Digest, short(forced.Commit))
	}
	if downgrade != "" {
		fmt.Fprintf(&b, "Deployed with --allow-downgrade: an older model than the live one.\n")
	}
	b.WriteString("\n")
	writeTrailers(&b, r, r.PreviousDigest)
	if downgrade != "" {
		fmt.Fprintf(&b, "%s: %s\n", TrailerAllowDowngrade, downgrade)
	}
	return b.String()
}

// revertMessage is the message of a revert commit, in git's own form, with
// the trailers of the release it restores (nil when it restores none).
func revertMessage(target Event, restored *Release, id, previous, note string, extra []Trailer) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nThis reverts commit %s.\n\n", revertSubject(target.Subject), target.Commit)
	if note = strings.TrimSpace(note); note != "" {
		b.WriteString(note + "\n\n")
	}
	if restored == nil {
		restored = &Release{Hospital: id}
	}
	writeTrailers(&b, *restored, previous)
	for _, t := range extra {
		// A trailer's value is one line: a newline would end the paragraph.
		fmt.Fprintf(&b, "%s: %s\n", t.Key, strings.Join(strings.Fields(t.Value), " "))
	}
	return b.String()
}

// revertSubject is the subject git revert gives the revert of a commit:
// Revert "<subject>", and Reapply "<subject>" for the revert of a revert.
func revertSubject(s string) string {
	if inner, ok := strings.CutPrefix(s, `Revert "`); ok && strings.HasSuffix(inner, `"`) {
		return `Reapply "` + inner
	}
	return `Revert "` + s + `"`
}

func writeTrailers(b *strings.Builder, r Release, previous string) {
	fmt.Fprintf(b, "%s: %s\n", TrailerHospital, r.Hospital)
	if r.Version != "" {
		fmt.Fprintf(b, "%s: %s\n", TrailerVersion, r.Version)
	}
	if r.Digest != "" {
		fmt.Fprintf(b, "%s: %s\n", TrailerDigest, r.Digest)
	}
	if previous != "" {
		fmt.Fprintf(b, "%s: %s\n", TrailerPreviousDigest, previous)
	}
}

func short(sha string) string {
	if len(sha) > 12 {
		return sha[:12]
	}
	return sha
}
