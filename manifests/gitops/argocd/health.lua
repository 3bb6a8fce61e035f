-- Argo CD health check for vigil.dev/ModelDeployment.
-- Reads only the status the operator writes (kstatus conventions), so Argo CD
-- waits exactly as `kubectl wait --for=condition=Ready` does.
local hs = {}
local function condition(kind)
  if obj.status ~= nil and obj.status.conditions ~= nil then
    for _, c in ipairs(obj.status.conditions) do
      if c.type == kind then
        return c
      end
    end
  end
  return nil
end

if obj.status == nil or obj.status.observedGeneration == nil
    or obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe the latest spec"
  return hs
end

local ready = condition("Ready")
local message = ""
if ready ~= nil and ready.message ~= nil then
  message = ready.message
end
local phase = obj.status.phase

if phase == "Failed" or phase == "Degraded" or phase == "RolledBack" then
  hs.status = "Degraded"
  hs.message = phase .. ": " .. message
  return hs
end
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
-- Paused: spec.paused, or a person's `kubectl vigil pause` / an open-ended
-- pause step (the operator says so in the Ready or Progressing reason).
local function paused(c)
  return c ~= nil and (c.reason == "RolloutPaused" or c.reason == "Paused"
    or c.reason == "WaitingForPerson")
end
if (obj.spec ~= nil and obj.spec.paused == true) or paused(ready)
    or paused(condition("Progressing")) then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
hs.status = "Progressing"
hs.message = message
return hs
