-- Health of a stackops.io/SystemVMTemplate object for Argo CD, from the conditions the stackops operator writes.
-- It follows kstatus (sigs.k8s.io/cli-utils), as Flux does, so that both tools agree; docs/gitops.md has the
-- table. Paused -> Suspended; generation not observed yet -> Progressing; the first of Reconciling=True
-- (Progressing) or Stalled=True (Degraded) in list order; otherwise Healthy, including Ready=False under
-- managementPolicy Observe (the drift is the report asked for) and Ready=Unknown: neither will change by waiting.
local hs = {}

local function describe(condition)
  local reason = condition.reason or condition.type
  if condition.message ~= nil and condition.message ~= "" then
    return reason .. ": " .. condition.message
  end
  return reason
end

local metadata = obj.metadata or {}
local paused = metadata.annotations and metadata.annotations["stackops.io/paused"]
if paused ~= nil and string.lower((string.gsub(tostring(paused), "^%s*(.-)%s*$", "%1"))) == "true" then
  hs.status = "Suspended"
  hs.message = "Paused by the stackops.io/paused annotation: the operator does not act on this object"
  return hs
end

local status = obj.status
local generation = metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. generation
  else
    hs.message = "Waiting for the operator to report status"
  end
  return hs
end
if generation ~= nil and status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation ..
    " (status is for generation " .. status.observedGeneration .. ")"
  return hs
end

local ready = nil
for _, condition in ipairs(status.conditions or {}) do
  if condition.type == "Reconciling" and condition.status == "True" then
    hs.status = "Progressing"
    hs.message = describe(condition)
    return hs
  end
  if condition.type == "Stalled" and condition.status == "True" then
    hs.status = "Degraded"
    hs.message = describe(condition)
    return hs
  end
  if condition.type == "Ready" then
    ready = condition
  end
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report conditions"
  return hs
end
hs.status = "Healthy"
if ready.status == "True" then
  hs.message = describe(ready)
elseif ready.status == "False" and obj.spec ~= nil and obj.spec.managementPolicy == "Observe" then
  hs.message = "Observe only, nothing is changed: " .. describe(ready)
elseif ready.status == "False" then
  hs.message = "Not ready, nothing in progress: " .. describe(ready)
else
  hs.message = "Ready is " .. tostring(ready.status) .. ": " .. describe(ready)
end
return hs
