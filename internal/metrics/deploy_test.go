package metrics_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/concordtm/concord/internal/coordinator"
	"github.com/concordtm/concord/internal/metrics"
	"github.com/concordtm/concord/internal/protocol"
)

const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/concord.json"
)

// scrapeLabels are the labels Prometheus itself adds to every series, and
// scrapeMetrics the series it writes per target.
var (
	scrapeLabels  = []string{"job", "instance"}
	scrapeMetrics = map[string][]string{"up": nil}
)

// exported returns every series name the coordinator exports (histograms as
// their _bucket, _sum and _count series) with its label names, after one
// call of every listener callback so that each vector has a child.
func exported(t *testing.T) map[string][]string {
	t.Helper()
	m := metrics.New()
	m.Watch(func() coordinator.Stats { return coordinator.Stats{} })
	l := m.Listener()
	l.GroupCommit(1, time.Millisecond, errors.New("disk full"))
	l.BranchCall(protocol.ModeSaga, protocol.OpAction, protocol.OutcomeSuccess, time.Millisecond)
	l.Started(context.Background(), "g", protocol.ModeSaga)
	l.Finished(protocol.ModeSaga, protocol.StatusSucceeded)
	l.Ended("g", protocol.ModeSaga, protocol.StatusSucceeded)
	l.Alerted(coordinator.Alert{Kind: "stuck"})
	l.Heartbeat(10*time.Second, nil)
	l.CallStart(context.Background(), "g", protocol.ModeSaga, protocol.Call{Op: protocol.OpAction, Attempt: 2})
	families, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, f := range families {
		var labels []string
		if len(f.GetMetric()) > 0 {
			for _, lp := range f.GetMetric()[0].GetLabel() {
				labels = append(labels, lp.GetName())
			}
		}
		name := f.GetName()
		if f.GetType().String() == "HISTOGRAM" {
			out[name+"_bucket"] = append(append([]string{}, labels...), "le")
			out[name+"_sum"] = labels
			out[name+"_count"] = labels
			continue
		}
		out[name] = labels
	}
	for name, labels := range scrapeMetrics {
		out[name] = labels
	}
	return out
}

// checkExpr parses expr and checks that every metric it names is exported
// and every label it names belongs to one of those metrics or to the scrape.
func checkExpr(known map[string][]string, expr string) error {
	refs, err := parsePromQL(expr)
	if err != nil {
		return err
	}
	allowed := map[string]bool{}
	for _, l := range scrapeLabels {
		allowed[l] = true
	}
	for _, name := range refs.metrics {
		labels, ok := known[name]
		if !ok {
			return errors.New("unknown metric " + name)
		}
		for _, l := range labels {
			allowed[l] = true
		}
	}
	for _, l := range refs.labels {
		if !allowed[l] {
			return errors.New("label " + l + " belongs to none of " + strings.Join(refs.metrics, ", "))
		}
	}
	return nil
}

// The rules file structure Prometheus documents (recording and alerting rules).
type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Limit    int    `yaml:"limit"`
		Rules    []struct {
			Record        string            `yaml:"record"`
			Alert         string            `yaml:"alert"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// templateFuncs stubs the functions Prometheus offers in alert templates,
// so that an annotation that calls an unknown one fails to parse.
var templateFuncs = template.FuncMap{}

func init() {
	for _, f := range strings.Fields(`humanize humanize1024 humanizeDuration humanizePercentage
		humanizeTimestamp title toUpper toLower match reReplaceAll label value first query
		args safeHtml stripPort stripDomain graphLink tableLink pathPrefix externalURL
		sortByLabel strvalue parseDuration toTime`) {
		templateFuncs[f] = func(...any) any { return nil }
	}
}

func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	known := exported(t)
	if len(rf.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	groups, alerts := map[string]bool{}, 0
	for _, g := range rf.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group name %q empty or repeated", g.Name)
		}
		groups[g.Name] = true
		if g.Interval != "" {
			if _, err := model.ParseDuration(g.Interval); err != nil {
				t.Errorf("group %s: interval: %v", g.Name, err)
			}
		}
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			if (r.Alert == "") == (r.Record == "") {
				t.Errorf("group %s: a rule needs exactly one of alert and record (%q)", g.Name, name)
			}
			for what, d := range map[string]string{"for": r.For, "keep_firing_for": r.KeepFiringFor} {
				if _, err := model.ParseDuration(d); d != "" && err != nil {
					t.Errorf("%s: %s: %v", name, what, err)
				}
			}
			if err := checkExpr(known, r.Expr); err != nil {
				t.Errorf("%s: expr %q: %v", name, r.Expr, err)
			}
			if r.Alert != "" {
				alerts++
				if s := r.Labels["severity"]; s != "critical" && s != "warning" {
					t.Errorf("%s: severity %q, want critical or warning", name, s)
				}
				if r.Annotations["summary"] == "" {
					t.Errorf("%s: no summary annotation", name)
				}
			}
			for k, v := range r.Annotations {
				// Prometheus defines these variables before every alert template.
				const prelude = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"
				if _, err := template.New(k).Funcs(templateFuncs).Parse(prelude + v); err != nil {
					t.Errorf("%s: annotation %s: %v", name, k, err)
				}
			}
		}
	}
	// The conditions an operator must hear about, each covered by a rule.
	for _, metric := range []string{"up", "concord_transactions_stuck", "concord_twopc_in_doubt_oldest_seconds", "concord_store_commit_errors_total", "concord_lease_heartbeat_last_success_timestamp_seconds"} {
		if !bytes.Contains(data, []byte(metric)) {
			t.Errorf("no rule on %s", metric)
		}
	}
	t.Logf("%d groups, %d alerts checked", len(rf.Groups), alerts)
}

// grafanaVar is how the dashboard's template variables appear in queries.
var grafanaVar = regexp.MustCompile(`label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)`)

func TestGrafanaDashboard(t *testing.T) {
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		Title      string `json:"title"`
		UID        string `json:"uid"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
		Panels []struct {
			ID      int    `json:"id"`
			Title   string `json:"title"`
			GridPos struct {
				H, W, X, Y int
			} `json:"gridPos"`
			Targets []struct {
				RefID string `json:"refId"`
				Expr  string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("dashboard needs a title, a uid and panels")
	}
	known := exported(t)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := json.Marshal(v.Query)
		m := grafanaVar.FindStringSubmatch(string(q))
		if m == nil {
			t.Errorf("variable %s: query %s is not label_values(metric, label)", v.Name, q)
			continue
		}
		if err := checkExpr(known, m[1]+`{`+m[2]+`!=""}`); err != nil {
			t.Errorf("variable %s: %v", v.Name, err)
		}
	}
	ids, used := map[int]bool{}, map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d repeated", p.ID)
		}
		ids[p.ID] = true
		if g := p.GridPos; g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			t.Errorf("panel %q: grid position %+v off the 24-column grid", p.Title, g)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if err := checkExpr(known, tg.Expr); err != nil {
				t.Errorf("panel %q %s: expr %q: %v", p.Title, tg.RefID, tg.Expr, err)
			}
			refs, _ := parsePromQL(tg.Expr)
			for _, m := range refs.metrics {
				used[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(m, "_bucket"), "_sum"), "_count")] = true
			}
		}
	}
	// Every concord_ metric appears on the dashboard.
	for name := range known {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if strings.HasPrefix(name, "concord_") && !used[base] {
			t.Errorf("metric %s is on no panel", base)
		}
	}
}

// TestPromQLChecker shows that the checker catches the mistakes it is for.
func TestPromQLChecker(t *testing.T) {
	known := exported(t)
	for _, expr := range []string{
		`concord_transactions_stuck > 0`,
		`histogram_quantile(0.99, sum by (mode, le) (rate(concord_transaction_duration_seconds_bucket{job="concord"}[5m])))`,
		`sum(rate(concord_branch_call_duration_seconds_count{outcome="unknown"}[$__rate_interval])) / ignoring(outcome) sum(rate(concord_branch_call_duration_seconds_count[5m:1m]))`,
		`up{job="concord"} == 0 offset 5m`,
		`concord_alerts_total{kind=~"stuck|in-doubt"} # comment (`,
	} {
		if err := checkExpr(known, expr); err != nil {
			t.Errorf("%s: %v", expr, err)
		}
	}
	for _, expr := range []string{
		`concord_transaction_stuck > 0`,                   // misspelt metric
		`concord_transaction_duration_seconds > 1`,        // a histogram's base name is no series
		`rate(concord_alerts_total{knd="stuck"}[5m])`,     // unknown label
		`sum by (op) (concord_transactions_live)`,         // label of no selected metric
		`rat(concord_alerts_total[5m])`,                   // unknown function
		`sum(rate(concord_alerts_total[5m])`,              // unbalanced
		`rate(concord_alerts_total[5 minutes])`,           // bad range
		`concord_alerts_total{kind="stuck}`,               // unterminated string
		`concord_transactions_live{instance=~"$instance"`, // unclosed brace
		`1 > 0`, // selects nothing
	} {
		if err := checkExpr(known, expr); err == nil {
			t.Errorf("%s: accepted", expr)
		}
	}
}
