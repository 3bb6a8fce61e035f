//go:build tools

// Package tools pins the SeaweedFS server built by hack/build-seaweedfs.sh.
package tools

import (
	_ "github.com/seaweedfs/seaweedfs/weed"
)
