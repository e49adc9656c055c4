package agent

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/wardml/ward/models/modeltest"
)

// Batches of a hundred cases through the front endpoint come back whole.
// The proxy streams the request to the model server while the answer
// streams back; without full duplex on the front connection, about one
// answer in 150 was cut short (golang/go#40747): the demo's clients saw
// "unexpected EOF".
func TestProxiesBatchesWhole(t *testing.T) {
	host, _, stop := inProcessRegistry(t)
	defer stop()
	f := newFixture(t, host)
	f.publish("v1", model(t, "v1", 1), f.key)
	f.mustDeploy("v1")
	r := f.startAgent("")
	r.waitServing(t, f, "v1", 30*time.Second)
	fitted := modeltest.StOlaf(t, 2000, 1, 1)
	var batch []map[string]any
	for _, c := range fitted.Valid[:100] {
		batch = append(batch, modeltest.Request(fitted.Artifact.Inputs, c.Row))
	}
	body, err := json.Marshal(map[string]any{"instances": batch})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{}
	for i := range 1000 {
		if _, err := answer(client, r.url, body); err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
	}
}
