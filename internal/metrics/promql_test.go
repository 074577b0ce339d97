package metrics_test

import (
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// This file holds a small PromQL checker for the shipped alert rules and
// dashboard. The real parser (github.com/prometheus/prometheus/promql/parser)
// would pull the whole Prometheus module into go.mod, so the test lexes
// expressions itself: it checks brackets, strings, range durations and
// function names, and collects the metric and label names an expression
// uses, which deploy_test.go checks against the registry. It does not type
// check (a range vector passed where an instant vector is due passes).

// promqlRefs are the names one expression uses.
type promqlRefs struct {
	metrics []string
	labels  []string
}

var promqlFuncs = map[string]bool{}

func init() {
	for _, f := range strings.Fields(`abs absent absent_over_time avg_over_time ceil changes clamp
		clamp_max clamp_min count_over_time day_of_month day_of_week days_in_month delta deriv exp
		floor histogram_quantile holt_winters hour idelta increase irate label_join label_replace
		last_over_time ln log10 log2 max_over_time min_over_time minute month predict_linear
		quantile_over_time rate resets round scalar sgn sort sort_desc sqrt stddev_over_time
		stdvar_over_time sum_over_time time timestamp vector year
		sum avg min max count stddev stdvar topk bottomk quantile count_values group`) {
		promqlFuncs[f] = true
	}
}

var (
	// rangeBody is what may stand between [ and ]: a duration (or a
	// Grafana interval variable), optionally a subquery resolution.
	rangeBody  = regexp.MustCompile(`^\s*(\$__\w+|\$\w+|(\d+(ms|[smhdwy]))+)\s*(:\s*(\$__\w+|(\d+(ms|[smhdwy]))+)?\s*)?$`)
	identStart = func(r byte) bool { return r == '_' || r == ':' || unicode.IsLetter(rune(r)) }
	identPart  = func(r byte) bool { return identStart(r) || unicode.IsDigit(rune(r)) }
)

// parsePromQL lexes expr and returns the metric and label names it uses.
func parsePromQL(expr string) (promqlRefs, error) {
	var refs promqlRefs
	var stack []byte
	labelList := false // the next ( opens a by/without/on/ignoring/group_* label list
	inBraces := func() bool { return len(stack) > 0 && stack[len(stack)-1] == '{' }
	peek := func(i int) byte {
		for ; i < len(expr); i++ {
			if expr[i] != ' ' && expr[i] != '\t' && expr[i] != '\n' {
				return expr[i]
			}
		}
		return 0
	}
	i := 0
	for i < len(expr) {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for ; j < len(expr) && expr[j] != c; j++ {
				if expr[j] == '\\' && c != '`' {
					j++
				}
			}
			if j >= len(expr) {
				return refs, fmt.Errorf("unterminated string at %d", i)
			}
			i = j + 1
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return refs, fmt.Errorf("unclosed [ at %d", i)
			}
			if !rangeBody.MatchString(expr[i+1 : i+j]) {
				return refs, fmt.Errorf("bad range %q", expr[i:i+j+1])
			}
			i += j + 1
		case c == '(' || c == '{':
			if c == '(' && labelList {
				j := strings.IndexByte(expr[i:], ')')
				if j < 0 {
					return refs, fmt.Errorf("unclosed label list at %d", i)
				}
				for _, l := range strings.Split(expr[i+1:i+j], ",") {
					l = strings.TrimSpace(l)
					if l == "" || !identStart(l[0]) || strings.IndexFunc(l, func(r rune) bool { return r > 127 || !identPart(byte(r)) }) >= 0 {
						return refs, fmt.Errorf("bad label %q in list", l)
					}
					refs.labels = append(refs.labels, l)
				}
				labelList = false
				i += j + 1
				continue
			}
			stack = append(stack, c)
			i++
		case c == ')' || c == '}':
			open := byte('(')
			if c == '}' {
				open = '{'
			}
			if len(stack) == 0 || stack[len(stack)-1] != open {
				return refs, fmt.Errorf("unbalanced %c at %d", c, i)
			}
			stack = stack[:len(stack)-1]
			i++
		case unicode.IsDigit(rune(c)) || (c == '.' && i+1 < len(expr) && unicode.IsDigit(rune(expr[i+1]))):
			for i < len(expr) && (identPart(expr[i]) || expr[i] == '.') {
				i++
			}
		case identStart(c):
			j := i
			for j < len(expr) && identPart(expr[j]) {
				j++
			}
			word := expr[i:j]
			i = j
			switch {
			case inBraces():
				refs.labels = append(refs.labels, word)
			case word == "by" || word == "without" || word == "on" || word == "ignoring" || word == "group_left" || word == "group_right":
				labelList = peek(i) == '('
			case word == "and" || word == "or" || word == "unless" || word == "bool" || word == "offset" || word == "Inf" || word == "NaN" || word == "inf" || word == "nan":
			case promqlFuncs[word]: // a function, or an aggregator followed by by/without
			case peek(i) == '(':
				if !promqlFuncs[word] {
					return refs, fmt.Errorf("unknown function %q", word)
				}
			default:
				refs.metrics = append(refs.metrics, word)
			}
		case strings.IndexByte("+-*/%^=!<>~,", c) >= 0:
			i++
		default:
			return refs, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	if len(stack) > 0 {
		return refs, fmt.Errorf("unclosed %c", stack[len(stack)-1])
	}
	if len(refs.metrics) == 0 {
		return refs, fmt.Errorf("selects no metric")
	}
	return refs, nil
}
