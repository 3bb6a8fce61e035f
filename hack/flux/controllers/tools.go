//go:build tools

// Package tools pins the two controllers hack/build-flux.sh builds.
package tools

import (
	_ "github.com/fluxcd/kustomize-controller"
	_ "github.com/fluxcd/source-controller"
)
