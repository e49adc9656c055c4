package contract

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// Inbound says where and how the hospital drops its extracts.
type Inbound struct {
	// Folder on the SFTP server, relative to WARD_SFTP's base path (and to
	// --from for local backfills). Default "<id>/inbound".
	Folder string `yaml:"folder"`
	// Encryption of the extracts: none, openpgp or age. Binary and
	// ASCII-armored files are both accepted.
	Encryption string `yaml:"encryption"`
	// SignedBy, when set, is the hospital's OpenPGP public key (a path
	// relative to the contract); every extract must carry a valid
	// signature by it.
	SignedBy string `yaml:"signed_by"`
	// Ready says when a file on the server is complete: "marker" (a
	// NAME.done file beside it), "stable" (same size and mtime in two
	// listings) or "either" (default).
	Ready string `yaml:"ready"`
	// Predictions is the file pattern of the prediction logs the hospital
	// drops beside its extracts (the server's JSON lines). Optional.
	Predictions string `yaml:"predictions"`
	// Limits bound the bytes one extract may decompress into.
	Limits Limits `yaml:"limits"`
}

func (in *Inbound) normalize(id string) error {
	if in.Folder == "" {
		in.Folder = id + "/inbound"
	}
	if path.IsAbs(in.Folder) || slices.Contains(strings.Split(in.Folder, "/"), "..") {
		return fmt.Errorf("inbound: folder %q must be relative, without ..", in.Folder)
	}
	switch in.Encryption {
	case "":
		in.Encryption = "none"
	case "none", "openpgp", "age":
	default:
		return fmt.Errorf("inbound: encryption %q: want none, openpgp or age", in.Encryption)
	}
	if in.SignedBy != "" && in.Encryption != "openpgp" {
		return fmt.Errorf("inbound: signed_by needs encryption openpgp, not %s", in.Encryption)
	}
	switch in.Ready {
	case "":
		in.Ready = "either"
	case "marker", "stable", "either":
	default:
		return fmt.Errorf("inbound: ready %q: want marker, stable or either", in.Ready)
	}
	if in.Predictions != "" {
		if _, err := path.Match(in.Predictions, ""); err != nil {
			return fmt.Errorf("inbound: predictions pattern %q: %v", in.Predictions, err)
		}
	}
	return in.Limits.normalize()
}
