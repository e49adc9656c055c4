// Package version says which ward this is. Release builds set Version and
// Commit with -ldflags "-X github.com/wardml/ward/internal/version.Version=...";
// a plain `go build` falls back to the module's build information. The
// version goes into `ward version`, every model artifact's lineage and every
// image's annotations.
package version

import (
	"runtime"
	"runtime/debug"
)

// Set by the linker in release builds.
var (
	Version = ""
	Commit  = ""
)

// Info is what `ward version` prints.
type Info struct {
	Version string `json:"version"`
	Commit  string `json:"commit"`
	Go      string `json:"go"`
}

// Get returns the version, the commit and the Go version.
func Get() Info {
	info := Info{Version: Version, Commit: Commit, Go: runtime.Version()}
	if bi, ok := debug.ReadBuildInfo(); ok {
		if info.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			info.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && info.Commit == "" {
				info.Commit = s.Value
			}
		}
	}
	if info.Version == "" {
		info.Version = "dev"
	}
	if info.Commit == "" {
		info.Commit = "unknown"
	}
	return info
}

// String is the one-line form, e.g. "v0.3.0 (abc1234)".
func (i Info) String() string {
	c := i.Commit
	if len(c) > 12 {
		c = c[:12]
	}
	return i.Version + " (" + c + ")"
}
