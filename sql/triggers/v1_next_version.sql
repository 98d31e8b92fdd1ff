-- 1 + the highest version ever logged for the entity {{entity}}, including pruned ones.
(coalesce((SELECT max(version) FROM tether_mutation_logs WHERE entity_id = {{entity}}),
          (SELECT version FROM tether_entity_versions WHERE entity_id = {{entity}}),
          0) + 1)
