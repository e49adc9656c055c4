package site

// The pages: plain HTML and one style sheet, nothing fetched from
// elsewhere, no script. Links are relative, so the site works from file://
// and from any folder of a static host.
const templates = `
{{define "head"}}<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<link rel="stylesheet" href="{{.Root}}style.css">
</head>
<body>
<nav><a href="{{.Root}}index.html">ward: the fleet</a></nav>
<main>
{{end}}

{{define "foot"}}</main>
</body>
</html>
{{end}}

{{define "flags"}}{{if .Degraded}}<span class="flag bad">degraded</span>{{end}}{{if .Drifted}}<span class="flag warn">drifted</span>{{end}}{{if and (not .Degraded) (not .Drifted)}}{{if .Verdict}}<span class="flag">{{.Verdict}}</span>{{else}}-{{end}}{{end}}{{end}}

{{define "index"}}{{template "head" .}}
<h1>The fleet</h1>
<p>What each hospital runs, as the manifest repo says, and how it does{{if .Latest}} by the latest feedback run, <a href="runs/{{.Latest.Name}}.html">{{.Latest.Name}}</a>{{end}}.</p>
<table id="fleet">
<thead><tr><th>hospital</th><th>live version</th><th>digest</th><th>deployed</th><th>by commit</th><th>validation MAE</th><th>live MAE</th><th>verdict</th><th>last rollback</th></tr></thead>
<tbody>
{{range .Rows}}<tr id="h-{{.ID}}">
<td><a href="hospitals/{{.ID}}.html">{{.ID}}</a><br><small>{{.Name}}</small></td>
{{if .Live}}<td>{{.Live.Version}}</td><td><code title="{{.Live.Digest}}">{{short .Live.Digest}}</code></td>{{else}}<td>-</td><td>-</td>{{end}}
{{if .Since}}<td>{{when .Since.Time}}<br><small>{{.Since.Action}}</small></td><td><code>{{short .Since.Commit}}</code> {{.Since.Subject}}</td>{{else}}<td>-</td><td>{{if .Problem}}{{.Problem}}{{else}}-{{end}}</td>{{end}}
<td>{{.ValidationMAE}}</td><td>{{.LiveMAE}}</td>
<td>{{template "flags" .}}{{if .Judged}}<br><small>of {{.Judged}}, no longer live</small>{{end}}</td>
<td>{{with .LastRollback}}{{when .Event.Time}}: {{if .Removed}}{{.Removed}} rolled back{{else}}a rollback{{end}} (<code>{{short .Event.Commit}}</code>)<br><small>{{.Reason}}</small>{{else}}-{{end}}</td>
</tr>
{{end}}</tbody>
</table>
<h2>Runs</h2>
<ul id="runs">
{{range .Training}}<li><a href="runs/{{.Name}}.html">{{.Name}}</a>: ward train, {{len .Models}} models</li>
{{end}}{{range .Feedback}}<li><a href="runs/{{.Name}}.html">{{.Name}}</a>: ward feedback, {{len .Report.Hospitals}} hospitals{{if .Plan}}{{if .Plan.Incident}}, <strong>an incident</strong>{{end}}{{end}}</li>
{{end}}</ul>
{{template "foot" .}}{{end}}

{{define "hospital"}}{{template "head" .}}
{{with .Row}}<h1>{{.ID}}</h1>
<p>{{.Name}}. Live: {{if .Live}}<strong>{{.Live.Version}}</strong>, <code>{{.Live.Digest}}</code>, image <code>{{.Live.Image}}</code>{{else}}nothing deployed{{end}}.
Validation MAE {{.ValidationMAE}}, live MAE {{.LiveMAE}}. {{template "flags" .}}</p>{{end}}
<h2>History</h2>
<table id="history">
<thead><tr><th>when</th><th>what</th><th>version</th><th>digest</th><th>commit</th><th>who</th><th>why</th></tr></thead>
<tbody>
{{range .Events}}<tr class="{{.Action}}">
<td>{{when .Time}}</td><td>{{.Action}}{{if .Rejected}} <span class="flag bad">rolled back</span>{{end}}</td>
{{if .Release}}<td>{{.Release.Version}}</td><td><code title="{{.Release.Digest}}">{{short .Release.Digest}}</code></td>{{else}}<td>-</td><td>-</td>{{end}}
<td><code>{{short .Commit}}</code> {{.Subject}}</td><td>{{.Author}}</td><td>{{if .Reason}}{{.Reason}}{{else if .Problem}}{{.Problem}}{{end}}</td>
</tr>
{{else}}<tr><td colspan="7">no commit of this hospital in the manifest repo</td></tr>
{{end}}</tbody>
</table>
<h2>Training reports</h2>
<table id="reports">
<thead><tr><th>version</th><th>validation MAE</th><th>cases</th><th>report</th></tr></thead>
<tbody>
{{range .Reports}}<tr><td>{{.Version}}</td><td>{{num .Validation.MAE}}</td><td>{{count .Validation.Count}}</td><td>{{if .Report}}<a href="../{{.Report}}">report</a>{{else}}-{{end}}</td></tr>
{{else}}<tr><td colspan="4">no training run given</td></tr>
{{end}}</tbody>
</table>
<h2>Feedback</h2>
{{range .Feedback}}<section class="feedback">
<h3><a href="../runs/{{.Run.Name}}.html">{{.Run.Name}}</a>: {{.Hospital.Verdict}}</h3>
<p>{{.Hospital.Reason}}</p>
{{if .Decision}}<p class="policy"><strong>Policy</strong> (on_degraded {{.Decision.OnDegraded}}, on_drift {{.Decision.OnDrift}}): {{.Decision.Summary}}</p>{{end}}
<table>
<thead><tr><th>version</th><th>cases</th><th>live MAE</th><th>validation MAE</th><th>ratio</th><th>verdict</th></tr></thead>
<tbody>
{{range .Hospital.Models}}<tr><td>{{.Version}}</td><td>{{count .Live.Count}}</td><td>{{num .Live.MAE}}</td><td>{{valmae .Validation}}</td><td>{{ratio .MAERatio}}</td><td>{{.Verdict}}</td></tr>
{{end}}</tbody>
</table>
{{range .Plots}}<img src="../{{.}}" alt="{{.}}">
{{end}}{{if .Report}}<p><a href="../{{.Report}}">the feedback report</a></p>{{end}}
</section>
{{else}}<p>no feedback run given</p>
{{end}}
{{template "foot" .}}{{end}}

{{define "training"}}{{template "head" .}}
{{with .Run}}<h1>{{.Name}}</h1>
<p>ward train: the models in {{.Dir}}.</p>
<table>
<thead><tr><th>hospital</th><th>version</th><th>validation MAE</th><th>cases</th><th>report</th></tr></thead>
<tbody>
{{range .Models}}<tr><td><a href="../hospitals/{{.Hospital}}.html">{{.Hospital}}</a></td><td>{{.Version}}</td><td>{{num .Validation.MAE}}</td><td>{{count .Validation.Count}}</td><td>{{if .Report}}<a href="../{{.Report}}">report</a>{{else}}-{{end}}</td></tr>
{{end}}</tbody>
</table>{{end}}
{{template "foot" .}}{{end}}

{{define "feedback"}}{{template "head" .}}
{{with .Run}}<h1>{{.Name}}</h1>
<p>ward feedback: the report in {{.Dir}}.</p>
{{if .Plan}}{{if .Plan.Incident}}<p class="incident"><strong>Incident:</strong> {{.Plan.Incident}}</p>{{end}}{{end}}
<table>
<thead><tr><th>hospital</th><th>model</th><th>verdict</th><th>why</th>{{if .Plan}}<th>policy</th>{{end}}</tr></thead>
<tbody>
{{$plan := .Plan}}{{range .Report.Hospitals}}<tr><td><a href="../hospitals/{{.Hospital}}.html">{{.Hospital}}</a></td><td>{{.Current}}</td><td>{{.Verdict}}</td><td>{{if .Error}}{{.Error}}{{else}}{{.Reason}}{{end}}</td>
{{if $plan}}<td>{{$id := .Hospital}}{{range $plan.Decisions}}{{if eq .Hospital $id}}{{.Summary}}{{end}}{{end}}</td>{{end}}</tr>
{{end}}</tbody>
</table>{{end}}
{{template "foot" .}}{{end}}
`

const style = `body { font: 15px/1.45 system-ui, sans-serif; margin: 0; color: #1d2430; background: #fafbfc; }
nav { background: #1d2430; padding: .6em 1.2em; }
nav a { color: #fff; text-decoration: none; font-weight: 600; }
main { padding: 1em 1.5em 3em; max-width: 1400px; }
table { border-collapse: collapse; margin: .8em 0 1.6em; background: #fff; }
th, td { border: 1px solid #d5dae1; padding: .35em .6em; text-align: left; vertical-align: top; }
th { background: #eef1f5; }
code { font-size: 90%; }
small { color: #5b6573; }
.flag { display: inline-block; padding: 0 .5em; border-radius: .8em; background: #e3f2e6; color: #1e6b34; }
.flag.bad { background: #fbe3e1; color: #a3231a; }
.flag.warn { background: #fdf0d5; color: #8a5a00; }
tr.rollback td { background: #fff6f5; }
.incident { background: #fbe3e1; padding: .6em; border-left: 4px solid #a3231a; }
img { max-width: 100%; height: auto; display: block; margin: .5em 0; border: 1px solid #d5dae1; }
`
