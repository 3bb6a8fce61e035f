//go:build tools

// Package tools pins the kustomize-controller command built by hack/build-flux.sh.
package tools

import _ "github.com/fluxcd/kustomize-controller"
