//go:build tools

// Package tools pins the Prometheus server built by hack/build-cluster.sh.
package tools

import (
	_ "github.com/prometheus/prometheus/cmd/prometheus"
	_ "github.com/prometheus/prometheus/cmd/promtool"
)
