package manifest

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// kustomize build hospitals/<id> of a clone (by the real git) works, pins
// the image by digest, and keeps the base's probes and securityContext.
// Kustomize is imported here only, so the ward binary does not carry it.
func TestKustomizeBuildPinsTheDigest(t *testing.T) {
	remote, r := newRemote(t)
	deploy(t, r, "st-olaf/v1")
	deploy(t, r, "mercy/v1")
	deploy(t, r, "st-olaf/v2")
	dir := clone(t, remote)
	v2 := img("st-olaf/v2")

	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), dir+"/hospitals/st-olaf")
	if err != nil {
		t.Fatalf("kustomize build hospitals/st-olaf: %v", err)
	}
	out, err := m.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("kustomize build hospitals/st-olaf:\n%s", out)

	var deployment, service map[string]any
	dec := yaml.NewDecoder(strings.NewReader(string(out)))
	for {
		var doc map[string]any
		if dec.Decode(&doc) != nil {
			break
		}
		switch doc["kind"] {
		case "Deployment":
			deployment = doc
		case "Service":
			service = doc
		}
	}
	if deployment == nil || service == nil {
		t.Fatalf("want a Deployment and a Service:\n%s", out)
	}
	get := func(v any, path ...any) any {
		for _, p := range path {
			switch p := p.(type) {
			case string:
				v = v.(map[string]any)[p]
			case int:
				v = v.([]any)[p]
			}
		}
		return v
	}
	checks := []struct {
		what string
		got  any
		want any
	}{
		{"deployment name", get(deployment, "metadata", "name"), "st-olaf-ward-serving"},
		{"service name", get(service, "metadata", "name"), "st-olaf-ward-serving"},
		{"hospital label", get(deployment, "metadata", "labels", "ward.dev/hospital"), "st-olaf"},
		{"selector label", get(deployment, "spec", "selector", "matchLabels", "ward.dev/hospital"), "st-olaf"},
		{"service selector", get(service, "spec", "selector", "ward.dev/hospital"), "st-olaf"},
		{"image", get(deployment, "spec", "template", "spec", "containers", 0, "image"), v2.Ref},
		{"port", get(deployment, "spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), 8080},
		{"readiness", get(deployment, "spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet", "path"), "/readyz"},
		{"liveness", get(deployment, "spec", "template", "spec", "containers", 0, "livenessProbe", "httpGet", "path"), "/healthz"},
		{"memory request", get(deployment, "spec", "template", "spec", "containers", 0, "resources", "requests", "memory"), "128Mi"},
		{"runAsNonRoot", get(deployment, "spec", "template", "spec", "containers", 0, "securityContext", "runAsNonRoot"), true},
		{"runAsUser", get(deployment, "spec", "template", "spec", "containers", 0, "securityContext", "runAsUser"), 65532},
		{"readOnlyRootFilesystem", get(deployment, "spec", "template", "spec", "containers", 0, "securityContext", "readOnlyRootFilesystem"), true},
		{"allowPrivilegeEscalation", get(deployment, "spec", "template", "spec", "containers", 0, "securityContext", "allowPrivilegeEscalation"), false},
		{"drop", get(deployment, "spec", "template", "spec", "containers", 0, "securityContext", "capabilities", "drop", 0), "ALL"},
		{"seccomp", get(deployment, "spec", "template", "spec", "containers", 0, "securityContext", "seccompProfile", "type"), "RuntimeDefault"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: %v, want %v", c.what, c.got, c.want)
		}
	}
	if strings.Contains(string(out), "image: ward-serving") || strings.Count(string(out), "@sha256:") != 1 {
		t.Errorf("the image is not pinned by digest exactly once:\n%s", out)
	}

	// The other hospital builds to its own image.
	m, err = k.Run(filesys.MakeFsOnDisk(), dir+"/hospitals/mercy")
	if err != nil {
		t.Fatalf("kustomize build hospitals/mercy: %v", err)
	}
	out, _ = m.AsYaml()
	if !strings.Contains(string(out), "image: "+img("mercy/v1").Ref) || !strings.Contains(string(out), "name: mercy-ward-serving") {
		t.Errorf("hospitals/mercy:\n%s", out)
	}
}
