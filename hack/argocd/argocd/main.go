// Command argocd is Argo CD v3.6.1's own entry point cut down to the components the GitOps
// e2e tests run: the repo-server, the application controller and git's askpass helper.
// Upstream's cmd links every component and the CLI (API server, ApplicationSets' SCM
// providers, notifications' services, cloud auth): 1.4 times the compile for nothing run
// here (hack/argocd/README.md). ARGOCD_BINARY_NAME chooses the component, as upstream's does.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	gitaskpass "github.com/argoproj/argo-cd/v3/cmd/argocd-git-ask-pass/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
	"github.com/argoproj/argo-cd/v3/common"
	"github.com/argoproj/argo-cd/v3/util/log"
)

func init() {
	// klog (client-go's logger) at Argo CD's configured level and format, as upstream's.
	klog.SetLogger(log.NewLogrusLogger(log.NewWithCurrentConfig()))
}

func main() {
	// No grpc.DisableSRVLookups() here: gRPC turns SRV lookups on only when its grpclb balancer
	// is linked (upstream's other components link it; these do not), and the
	// call panics when they are already off.
	name := filepath.Base(os.Args[0])
	if value := os.Getenv("ARGOCD_BINARY_NAME"); value != "" {
		name = value
	}
	var command *cobra.Command
	switch name {
	case common.CommandApplicationController:
		command = appcontroller.NewCommand()
	case common.CommandRepoServer:
		command = reposerver.NewCommand()
	case common.CommandGitAskPass:
		command = gitaskpass.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "argocd: %q is not built here (ARGOCD_BINARY_NAME: %s, %s or %s)\n",
			name, common.CommandApplicationController, common.CommandRepoServer, common.CommandGitAskPass)
		os.Exit(2)
	}
	if err := command.Execute(); err != nil {
		os.Exit(1)
	}
}
