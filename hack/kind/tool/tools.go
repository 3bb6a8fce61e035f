//go:build tools

// Package tools pins the kind CLI built by hack/kind/build-tools.sh.
package tools

import (
	_ "sigs.k8s.io/kind"
)
