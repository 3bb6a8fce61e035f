{{/* Labels every object carries: the kustomize base's two, and Helm's. */}}
{{- define "vigil.labels" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* The operator pod's selector: the same as the kustomize base's. */}}
{{- define "vigil.selector" -}}
app.kubernetes.io/name: vigil
app.kubernetes.io/component: operator
{{- end -}}

{{- define "vigil.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "vigil.serviceAccountName" -}}
{{ required "serviceAccount.name is required" .Values.serviceAccount.name }}
{{- end -}}

{{/* "true" when the sidecars' PodMonitor is rendered: metrics.podMonitor.enabled
true, or auto on a cluster that serves the kind; "" otherwise. */}}
{{- define "vigil.podMonitor" -}}
{{- $enabled := toString .Values.metrics.podMonitor.enabled -}}
{{- if not (has $enabled (list "true" "false" "auto")) -}}
{{- fail (printf "metrics.podMonitor.enabled must be true, false or auto, not %q" $enabled) -}}
{{- end -}}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1/PodMonitor")) -}}
true
{{- end -}}
{{- end -}}
