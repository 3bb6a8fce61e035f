//go:build tools

// Package tools pins the source-controller command built by hack/build-flux.sh.
package tools

import _ "github.com/fluxcd/source-controller"
