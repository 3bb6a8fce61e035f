//go:build tools

// Package tools pins the two controllers hack/build-flux.sh builds and the kwok
// controller hack/build-cluster.sh builds (one build list: go.mod).
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
	_ "sigs.k8s.io/kwok/cmd/kwok"
)
