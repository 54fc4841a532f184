{{/*
The chart renders the kustomize install's own files (files/* are symlinks into deploy/), so the
two cannot drift: tests/helm.rs holds the rendered objects equal to `kubectl kustomize`'s.
*/}}

{{- define "secretscope.labels" -}}
app.kubernetes.io/name: secretscope
app.kubernetes.io/part-of: secretscope
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/* A file of deploy/ with the install's namespace (`secretscope`) made the release's. */}}
{{- define "secretscope.file" -}}
{{- $root := index . 0 -}}
{{- $ns := $root.Release.Namespace -}}
{{- $text := $root.Files.Get (index . 1) -}}
{{- $text = regexReplaceAll "(?m)namespace: secretscope(,|$)" $text (printf "namespace: %s${1}" $ns) -}}
{{- $text = replace "system:serviceaccount:secretscope:" (printf "system:serviceaccount:%s:" $ns) $text -}}
{{- $text = replace "secretscope.secretscope.svc" (printf "secretscope.%s.svc" $ns) $text -}}
{{- $text -}}
{{- end }}

{{/* The objects of a file of deploy/, as a list (via JSON: include returns a string). */}}
{{- define "secretscope.objects" -}}
{{- $docs := list -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" (include "secretscope.file" .) -1 -}}
{{- $o := fromYaml $doc -}}
{{- if $o -}}{{- $docs = append $docs $o -}}{{- end -}}
{{- end -}}
{{- toJson $docs -}}
{{- end }}

{{/* One object, with the chart's labels added to its own. */}}
{{- define "secretscope.emit" -}}
{{- $root := index . 0 -}}
{{- $o := index . 1 -}}
{{- $labels := merge (fromYaml (include "secretscope.labels" $root)) ($o.metadata.labels | default dict) -}}
{{- $_ := set $o.metadata "labels" $labels -}}
---
{{ toYaml $o }}
{{ end }}

{{/* Every object of a file of deploy/, unchanged but for namespace and labels. */}}
{{- define "secretscope.render" -}}
{{- $root := index . 0 -}}
{{- range $o := fromJsonArray (include "secretscope.objects" .) -}}
{{- include "secretscope.emit" (list $root $o) -}}
{{- end -}}
{{- end }}

{{- define "secretscope.tlsSecretName" -}}
{{- if and (not .Values.certManager.enabled) .Values.tls.existingSecret -}}
{{- .Values.tls.existingSecret -}}
{{- else -}}
secretscope-tls
{{- end -}}
{{- end }}
