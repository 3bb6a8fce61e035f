//go:build tools

// Package tools pins the Argo CD command built by hack/build-argocd.sh.
package tools

import _ "github.com/argoproj/argo-cd/v3/cmd"
