{{/*
What a platform team adapts per component without forking the chart:
scheduling, extra pod labels and annotations, extra environment and
volumes, the priority class and the grace period a stop needs. Every helper
takes (dict "root" $ "component" "order-service" "values" .Values.orderService);
components: order-service, processor, payments-sim, migrations.

A name the chart already sets (an environment variable, a pod label or
annotation, a volume or its mount path) is refused rather than duplicated:
Kubernetes would keep one of the two without a word, and what the chart
derives from it (the grace period from SHUTDOWN_TIMEOUT, the selector from
the labels) would quietly stop being true.
*/}}

{{/* Where a component's values live, for messages. */}}
{{- define "ordo.valuesKey" -}}
{{- get (dict "order-service" "orderService" "processor" "processor" "payments-sim" "paymentsSim" "migrations" "migrations") . -}}
{{- end -}}

{{/* Whole seconds, rounded up, of a duration such as 5s, 1m30s or 500ms
     (the forms values.schema.json admits; the services read them the same). */}}
{{- define "ordo.durationSeconds" -}}
{{- $ms := 0 -}}
{{- $unit := dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000 -}}
{{- range regexFindAll "[0-9]+(ms|s|m|h)" . -1 -}}
{{- $ms = add $ms (mul (regexFind "^[0-9]+" . | atoi) (get $unit (regexReplaceAll "^[0-9]+" . ""))) -}}
{{- end -}}
{{- div (add $ms 999) 1000 -}}
{{- end -}}

{{/* How every service stops (one deadline: the drain delay, then the timeout). (root) */}}
{{- define "ordo.shutdownEnv" -}}
- name: SHUTDOWN_DRAIN_DELAY
  value: {{ .Values.shutdown.drainDelay | quote }}
- name: SHUTDOWN_TIMEOUT
  value: {{ .Values.shutdown.timeout | quote }}
{{- end -}}

{{/* The pod's grace period: the component's own when given, else the
     drain delay and the shutdown timeout plus 5 s for the process to exit
     (traces flushed) before the kubelet's SIGKILL. No preStop hook: the
     service itself serves on through the drain delay after SIGTERM (and the
     image has no shell to sleep in). */}}
{{- define "ordo.terminationGracePeriodSeconds" -}}
{{- if kindIs "invalid" .values.terminationGracePeriodSeconds -}}
{{- $shutdown := .root.Values.shutdown -}}
{{- add (include "ordo.durationSeconds" $shutdown.drainDelay) (include "ordo.durationSeconds" $shutdown.timeout) 5 -}}
{{- else -}}
{{- .values.terminationGracePeriodSeconds | int -}}
{{- end -}}
{{- end -}}

{{/* A list value rendered through tpl (so it may use e.g. {{ .Release.Name }}). (dict "root" $ "value" list) */}}
{{- define "ordo.tplList" -}}
{{- if .value -}}
{{- tpl (toYaml .value) .root -}}
{{- else -}}
[]
{{- end -}}
{{- end -}}

{{/* The container's env: the chart's own (`chart`, YAML text), then the
     component's `env` (name: value), then its `extraEnv` (EnvVar objects,
     valueFrom included, through tpl). A name set twice is refused. */}}
{{- define "ordo.env" -}}
{{- $key := include "ordo.valuesKey" .component -}}
{{- $all := .chart | fromYamlArray -}}
{{- $hints := dict "SHUTDOWN_DRAIN_DELAY" "shutdown.drainDelay" "SHUTDOWN_TIMEOUT" "shutdown.timeout" "RUST_LOG" "logs.filter" "LOG_FORMAT" "logs.format" "OTEL_EXPORTER_OTLP_ENDPOINT" "otlp.endpoint" -}}
{{- $seen := dict -}}
{{- range $all -}}
{{- $_ := set $seen .name (printf "the chart (from %s)" (get $hints .name | default "its values")) -}}
{{- end -}}
{{- range $name, $value := .values.env -}}
{{- if hasKey $seen $name -}}
{{- fail (printf "%s.env sets %s, which %s sets already: change the chart's value for it instead (see values.yaml)" $key $name (get $seen $name)) -}}
{{- end -}}
{{- $_ := set $seen $name (printf "%s.env" $key) -}}
{{- $all = append $all (dict "name" $name "value" (toString $value)) -}}
{{- end -}}
{{- range include "ordo.tplList" (dict "root" .root "value" .values.extraEnv) | fromYamlArray -}}
{{- if hasKey $seen .name -}}
{{- fail (printf "%s.extraEnv sets %s, which %s sets already: change the chart's value for it instead (see values.yaml)" $key .name (get $seen .name)) -}}
{{- end -}}
{{- $_ := set $seen .name (printf "%s.extraEnv" $key) -}}
{{- $all = append $all . -}}
{{- end -}}
{{- toYaml $all -}}
{{- end -}}

{{/* The pod's labels beyond the chart's: podLabels, refused where they
     would replace one of the chart's (the selectors rely on them). */}}
{{- define "ordo.podLabels" -}}
{{- $chart := include "ordo.labels" .root | fromYaml -}}
{{- $_ := set $chart "app.kubernetes.io/component" .component -}}
{{- range $name, $value := .values.podLabels -}}
{{- if hasKey $chart $name -}}
{{- fail (printf "%s.podLabels sets %s, a label the chart sets itself" (include "ordo.valuesKey" $.component) $name) -}}
{{- end -}}
{{- end -}}
{{- with .values.podLabels -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* The pod's annotations beyond the chart's (checksum/env, and
     prometheus.io/* with metrics.annotations): podAnnotations. (… "chart" YAML text) */}}
{{- define "ordo.podAnnotations.extra" -}}
{{- $chart := .chart | fromYaml -}}
{{- range $name, $value := .values.podAnnotations -}}
{{- if hasKey $chart $name -}}
{{- fail (printf "%s.podAnnotations sets %s, an annotation the chart sets itself (metrics.annotations: false drops prometheus.io/*)" (include "ordo.valuesKey" $.component) $name) -}}
{{- end -}}
{{- end -}}
{{- with .values.podAnnotations -}}
{{- toYaml . -}}
{{- end -}}
{{- end -}}

{{/* volumeMounts and volumes: the chart's Secrets (`mounts`, from
     ordo.secretMounts), then extraVolumeMounts and extraVolumes (through
     tpl). A volume name or mount path of the chart's is refused. */}}
{{- define "ordo.volumeMounts" -}}
{{- $key := include "ordo.valuesKey" .component -}}
{{- $paths := list -}}
{{- range .mounts -}}
{{- $paths = append $paths .path -}}
{{- end -}}
{{- $extra := include "ordo.tplList" (dict "root" .root "value" .values.extraVolumeMounts) | fromYamlArray -}}
{{- range $extra -}}
{{- if has .mountPath $paths -}}
{{- fail (printf "%s.extraVolumeMounts mounts at %s, where the chart mounts a Secret" $key .mountPath) -}}
{{- end -}}
{{- end -}}
{{- with .mounts -}}
{{- include "ordo.secretVolumeMounts" . | trim }}
{{- end }}
{{- with $extra }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{- define "ordo.volumes" -}}
{{- $key := include "ordo.valuesKey" .component -}}
{{- $names := list -}}
{{- range .mounts -}}
{{- $names = append $names .name -}}
{{- end -}}
{{- $extra := include "ordo.tplList" (dict "root" .root "value" .values.extraVolumes) | fromYamlArray -}}
{{- range $extra -}}
{{- if has .name $names -}}
{{- fail (printf "%s.extraVolumes names a volume %s, a name the chart uses" $key .name) -}}
{{- end -}}
{{- end -}}
{{- with .mounts -}}
{{- include "ordo.secretVolumes" . | trim }}
{{- end }}
{{- with $extra }}
{{ toYaml . }}
{{- end -}}
{{- end -}}

{{/* Where the pod may run: priorityClassName, nodeSelector, affinity,
     tolerations and, for a service ("spread" true), topologySpreadConstraints.
     Unset, the spread is a soft one over nodes among the pods of one
     rollout (pod-template-hash); a list given replaces it (an item without
     labelSelector gets the component's selector); an empty list drops it. */}}
{{- define "ordo.podScheduling" -}}
{{- with .values.priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .spread }}
{{- $selector := dict "matchLabels" (include "ordo.selector" (dict "root" .root "component" .component) | fromYaml) -}}
{{- $constraints := list -}}
{{- if kindIs "invalid" .values.topologySpreadConstraints -}}
{{- $constraints = list (dict "maxSkew" 1 "topologyKey" "kubernetes.io/hostname" "whenUnsatisfiable" "ScheduleAnyway" "labelSelector" $selector "matchLabelKeys" (list "pod-template-hash")) -}}
{{- else -}}
{{- range .values.topologySpreadConstraints -}}
{{- $constraint := deepCopy . -}}
{{- if not (hasKey $constraint "labelSelector") -}}
{{- $_ := set $constraint "labelSelector" $selector -}}
{{- end -}}
{{- $constraints = append $constraints $constraint -}}
{{- end -}}
{{- end -}}
{{- with $constraints }}
topologySpreadConstraints:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end }}
{{- end -}}
