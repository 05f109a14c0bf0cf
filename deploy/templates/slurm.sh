#!/bin/bash
{{directives}}
# EManager pilot job `{{job_name}}` (slurm template; a site overrides it with
# `template = "path"` in resources.toml; see docs/resources.md).

# When the allocation ends (epoch seconds), for the agent's walltime awareness.
export EMANAGER_JOB_END_TIME=$(( $(date +%s) + {{walltime_s}} ))
{{environment}}
{{pre_commands}}
cd {{workdir}} || exit 1
exec {{command}}
