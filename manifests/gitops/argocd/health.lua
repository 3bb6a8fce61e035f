-- Argo CD health check for vigil.dev/ModelDeployment.
-- Reads only the status the operator writes (kstatus conventions). Healthy
-- needs Ready True and Progressing not True: a bake after a promotion (Ready
-- True, Progressing True, reason Baking) can still send traffic back, so it
-- reads Progressing. That is `kubectl wait --for=condition=Ready` followed by
-- `kubectl wait --for=condition=Progressing=False`, not the first alone.
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
local progressing = condition("Progressing")
local moving = progressing ~= nil and progressing.status == "True"
if ready ~= nil and ready.status == "True" and not moving then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
-- Paused: a person's `kubectl vigil pause`, spec.paused holding a rollout, or
-- an open-ended pause step (the operator says so in the Ready or Progressing
-- reason; spec.paused alone holds nothing on a first deploy or a scale).
local function paused(c)
  return c ~= nil and (c.reason == "RolloutPaused" or c.reason == "Paused"
    or c.reason == "WaitingForPerson")
end
if paused(ready) or paused(progressing) then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
-- Ready but still under way (a bake): say what is under way.
if ready ~= nil and ready.status == "True" and progressing.message ~= nil then
  message = progressing.message
end
hs.status = "Progressing"
hs.message = message
return hs
