// Package trained defines the formats that carry a trained model between
// the stages of the loop: the folder ward train writes and ward package
// reads, the gate record in its metrics.json, the OCI annotation keys of
// the model's image that deploy and the agent read back, and the bounds of
// the image's layers. It is pure (names, one record type, no I/O), so that
// training, packaging, the manifest repo and the hospital's agent share it
// without importing each other.
package trained

import "time"

// The files of a hospital's folder in the output of ward train
// (DIR/<id>/...), which ward package takes as they are.
const (
	ModelFile = "model.json"
	CardFile  = "MODEL_CARD.md"
	ReportDir = "report"
	// MetricsFile, in ReportDir, holds the metrics, the split and the
	// gate ({"gate": Gate, ...}).
	MetricsFile = "metrics.json"
)

// Gate is the new model against the model in production, both scored on
// the new model's validation window with the contract's gate metric, as
// ward train records it in report/metrics.json and ward package reads it
// back (a failed gate is not shipped unless forced).
type Gate struct {
	Passed bool `json:"passed"`
	// Metric is mae, rmse or under_rate (lower is better for each), and
	// MaxRegression the relative worsening allowed.
	Metric        string  `json:"metric"`
	MaxRegression float64 `json:"max_regression"`
	// New and Production are each model's metric on the window, and
	// Regression is New / Production - 1.
	New               float64  `json:"new"`
	Production        *float64 `json:"production,omitempty"`
	ProductionVersion string   `json:"production_version,omitempty"`
	Regression        *float64 `json:"regression,omitempty"`
	Cases             int      `json:"cases"`
	// Reason says what was compared and why the gate passed or failed.
	Reason string `json:"reason"`
}

// Annotation keys of a packaged image (index, manifests, config labels):
// the OCI ones, and ward's own, which deploy, the agent and the manifest
// repo read back from a verified image. The model version is ward's own
// annotation, else the OCI version.
const (
	AnnotationCreated     = "org.opencontainers.image.created"
	AnnotationVersion     = "org.opencontainers.image.version"
	AnnotationRevision    = "org.opencontainers.image.revision"
	AnnotationSource      = "org.opencontainers.image.source"
	AnnotationTitle       = "org.opencontainers.image.title"
	AnnotationDescription = "org.opencontainers.image.description"
	// AnnotationBaseName and AnnotationBaseDigest name the server's base
	// image a model image was appended to (ward package --base).
	AnnotationBaseName   = "org.opencontainers.image.base.name"
	AnnotationBaseDigest = "org.opencontainers.image.base.digest"

	AnnotationHospital     = "dev.ward.hospital"
	AnnotationModelVersion = "dev.ward.model.version"
	AnnotationModelFamily  = "dev.ward.model.family"
	// AnnotationMetricPrefix + a metric's name (mae, rmse, under_rate, ...)
	// holds its validation value (dev.ward.metrics.mae: "1234.5").
	AnnotationMetricPrefix = "dev.ward.metrics."
)

// Paths inside the image, and the most that unpacking takes from each
// layer: the server is one static binary of tens of MiB, the model a file
// and its card. A layer that would unpack to more is refused before
// anything beyond the bound reaches the disk.
const (
	ServerPath = "/ward/serve"
	ModelPath  = "/models/model.json"
	CardPath   = "/models/MODEL_CARD.md"

	MaxServerBytes = 64 << 20
	// MaxModelBytes is the default bound of what an image unpacks under
	// /models/ (ward agent --max-model-bytes changes it).
	MaxModelBytes = 256 << 20
)

// ServerEnv lists the environment variables the server in the image reads
// (serving.Config): the agent passes these, and no other of its own
// environment, to the servers it starts.
var ServerEnv = []string{"WARD_MODEL", "PORT", "WARD_MODEL_DIGEST", "WARD_MAX_BATCH", "WARD_ID_FIELD",
	"WARD_PREDICTION_LOG", "WARD_HASH_INPUTS", "WARD_HASH_KEY", "WARD_HASH_KEY_FILE", "WARD_PREDICTIONS_DB"}

// The server's connection timeouts (serving.Config's defaults): reading a
// request, writing its answer, waiting for the next one on a kept-alive
// connection. The agent's front endpoint holds a client no longer.
const (
	ServerReadTimeout  = 10 * time.Second
	ServerWriteTimeout = 10 * time.Second
	ServerIdleTimeout  = 60 * time.Second
)
