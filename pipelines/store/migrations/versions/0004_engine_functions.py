"""engine transitions as PostgreSQL functions: a batch of stage ends or claims in one round trip

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 16:00:00.000000

The worker decides what follows a stage's end from the pipeline's definition (a plan, see
``pipelines.engine.handoff``); these functions apply a whole batch of such plans under each job's row
lock, conditionally on every run's dispatch token, in the one transaction of a single call.
SQLite has no functions: there the same plans are applied in Python.
"""
from alembic import op


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None

# ETA: the job's own rate, blended with past durations of the steps left (trusting the rate as it advances).
# ETA, as pipelines.engine.progress.eta_from computes it: the current step's own rate once it has made
# measurable progress (5 %, over 5 s), blended with past durations of the steps left (trusting the rate as it advances).
ETA = r"""
CREATE OR REPLACE FUNCTION conveyor_eta(p_progress float8, p_step_start float8, p_step_started timestamp,
                                        p_now timestamp, p_history jsonb, p_fraction float8) RETURNS float8
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE h float8; r float8;
BEGIN
  IF p_history IS NOT NULL AND jsonb_typeof(p_history) <> 'null' THEN
    h := (1 - p_fraction) * (p_history->>'self')::float8 + (p_history->>'after')::float8;
  END IF;
  IF p_step_started IS NOT NULL AND extract(epoch FROM p_now - p_step_started) >= 5.0 AND p_fraction >= 0.05
     AND p_progress > p_step_start THEN
    r := extract(epoch FROM p_now - p_step_started) * (100.0 - p_progress) / (p_progress - p_step_start);
  END IF;
  IF h IS NOT NULL AND r IS NOT NULL THEN
    RETURN (1 - p_progress / 100.0) * h + (p_progress / 100.0) * r;
  END IF;
  RETURN coalesce(r, h);
END $$;
"""

# One stage's end. ``e``: {"job", "run", "token", "step", "item", "output", "self": {...}, "next": {...} | null}
#   (step and item as the run's claim returned them).
#   self: the ended run's step: "p_before"/"p_weight" (shares of the total weight), "cap", "queue",
#         "join" ("list" | "object"), "history" (ETA: {"self", "after"} seconds or null)
#   next: the step after it (null: the job ends): "kind", "name", "step_text", "progress", "cap",
#         "runs" ([{"name", "actor", "queue"}]: one for a stage or fan-out, one per parallel branch), "history"
# Outcome: stale (not this message's run) | canceled (the job ended meanwhile) | counted (an item, not
# the last) | advanced (next step's runs created: new_runs) | finished | slow (nothing written: the
# caller records this end the general way, e.g. a job that ends with a webhook or a fan-out over no items).
# A counted item of a capped fan-out may queue waiting items: they are in new_runs, with their input.
END_ONE = r"""
CREATE OR REPLACE FUNCTION conveyor_end(e jsonb, OUT outcome text, OUT new_runs jsonb, OUT joined json)
LANGUAGE plpgsql AS $$
DECLARE
  v_now timestamp := clock_timestamp() AT TIME ZONE 'utc';
  v_iso text := to_char(clock_timestamp() AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS"Z"');
  v_job text := e->>'job';
  v_run bigint := (e->>'run')::bigint;
  v_self jsonb := e->'self';
  v_next jsonb := e->'next';
  v_finish boolean := e->'next' IS NULL OR jsonb_typeof(e->'next') = 'null';
  v_status text; v_stages jsonb; v_progress float8; v_webhook text;
  r_step int; r_item int; r_attempts int;
  v_input json; v_total int; v_ended int; v_last boolean; v_inflight int; v_cap int;
  v_nstep int; v_count int; v_token text; v_id bigint; v_p float8; v_fraction float8; w record;
BEGIN
  new_runs := '[]'::jsonb;
  SELECT j.status, j.stages::jsonb, j.progress, j.webhook_url
    INTO v_status, v_stages, v_progress, v_webhook
    FROM jobs j WHERE j.id = v_job FOR UPDATE;
  IF NOT FOUND THEN outcome := 'stale'; RETURN; END IF;
  r_step := (e->>'step')::int;
  r_item := (e->>'item')::int;
  IF v_status <> 'processing' THEN  -- canceled or failed meanwhile: the output is discarded
    UPDATE stage_runs SET status = 'canceled', output = NULL, progress = 1.0, finished_at = v_now,
           lease_until = NULL, error = NULL, updated_at = v_now,
           duration = extract(epoch FROM v_now - started_at)
     WHERE id = v_run AND (status || '') = 'processing' AND dispatch_token = e->>'token';
    outcome := CASE WHEN FOUND THEN 'canceled' ELSE 'stale' END; RETURN;
  END IF;

  v_last := true;
  IF r_item >= 0 THEN
    v_total := (v_stages #>> ARRAY[r_step::text, 'items', 'total'])::int;
    v_ended := (v_stages #>> ARRAY[r_step::text, 'items', 'completed'])::int
             + (v_stages #>> ARRAY[r_step::text, 'items', 'failed'])::int + 1;
    v_last := v_ended >= v_total;
    IF v_last THEN
      IF v_finish THEN outcome := 'slow'; RETURN; END IF;  -- the result of a join is finalized in Python
      IF v_self->>'join' = 'object' THEN
        SELECT json_object_agg(r.name, CASE WHEN r.id = v_run THEN (e->'output')::json
                                            WHEN r.status = 'completed' THEN r.output
                                            ELSE json_build_object('error', r.error) END ORDER BY r.item)
          INTO joined FROM stage_runs r WHERE r.job_id = v_job AND r.step = r_step AND r.item >= 0;
      ELSE
        SELECT json_agg(CASE WHEN r.id = v_run THEN (e->'output')::json
                             WHEN r.status = 'completed' THEN r.output
                             ELSE json_build_object('error', r.error) END ORDER BY r.item)
          INTO joined FROM stage_runs r WHERE r.job_id = v_job AND r.step = r_step AND r.item >= 0;
      END IF;
      v_input := joined;
    END IF;
  ELSE
    v_input := (e->'output')::json;
  END IF;
  IF v_last THEN
    IF v_finish AND v_webhook IS NOT NULL THEN outcome := 'slow'; RETURN; END IF;
    IF NOT v_finish AND v_next->>'kind' = 'fan_out'
       AND (json_typeof(v_input) <> 'array' OR json_array_length(v_input) = 0) THEN
      outcome := 'slow'; RETURN;
    END IF;
  END IF;

  UPDATE stage_runs SET status = 'completed', output = (e->'output')::json, progress = 1.0, finished_at = v_now,
         lease_until = NULL, error = NULL, updated_at = v_now, duration = extract(epoch FROM v_now - started_at)
   WHERE id = v_run AND (status || '') = 'processing' AND dispatch_token = e->>'token'
  RETURNING attempts INTO r_attempts;
  IF NOT FOUND THEN outcome := 'stale'; RETURN; END IF;  -- not this message's run (nothing written yet)

  IF r_item >= 0 THEN
    v_stages := jsonb_set(v_stages, ARRAY[r_step::text, 'items', 'completed'],
                          to_jsonb((v_stages #>> ARRAY[r_step::text, 'items', 'completed'])::int + 1));
    IF NOT v_last THEN
      v_cap := coalesce((v_self->>'cap')::int, 0);
      IF v_cap > 0 THEN  -- keep a capped fan-out full
        SELECT count(*) INTO v_inflight FROM stage_runs
         WHERE job_id = v_job AND step = r_step AND item >= 0 AND status IN ('queued', 'processing');
        FOR w IN SELECT id, item, actor, input FROM stage_runs
                  WHERE job_id = v_job AND step = r_step AND item >= 0 AND status = 'waiting'
                  ORDER BY item LIMIT greatest(0, v_cap - v_inflight) LOOP
          v_token := gen_random_uuid()::text;
          UPDATE stage_runs SET status = 'queued', dispatch_token = v_token, lease_until = NULL, due_at = v_now,
                 updated_at = v_now, queue = v_self->>'queue'
           WHERE id = w.id;
          new_runs := new_runs || jsonb_build_array(jsonb_build_object(
            'id', w.id, 'token', v_token, 'item', w.item, 'actor', w.actor, 'input', w.input::jsonb));
        END LOOP;
      END IF;
      v_fraction := v_ended::float8 / v_total;
      v_p := greatest(v_progress, round((100.0 * ((v_self->>'p_before')::float8
                                                  + (v_self->>'p_weight')::float8 * v_fraction))::numeric, 2));
      v_stages := jsonb_set(v_stages, ARRAY[r_step::text, 'progress'],
                            to_jsonb(greatest(coalesce((v_stages #>> ARRAY[r_step::text, 'progress'])::float8, 0),
                                              round((100.0 * v_fraction)::numeric, 2))));
      UPDATE jobs SET stages = v_stages::json, progress = v_p, updated_at = v_now, eta_at = v_now,
             eta_seconds = conveyor_eta(v_p, 100.0 * (v_self->>'p_before')::float8,
                                        (v_stages #>> ARRAY[r_step::text, 'started_at'])::timestamp, v_now,
                                        v_self->'history', v_fraction)
       WHERE id = v_job;
      outcome := 'counted'; RETURN;
    END IF;
    UPDATE stage_runs r SET status = 'completed', output = joined, progress = 1.0, finished_at = v_now,
           updated_at = v_now, duration = extract(epoch FROM v_now - r.started_at)
     WHERE r.job_id = v_job AND r.step = r_step AND r.item = -1;
    r_attempts := NULL;
  END IF;

  -- the step is complete
  v_stages := jsonb_set(v_stages, ARRAY[r_step::text], (v_stages -> r_step) || jsonb_build_object(
    'status', 'completed', 'progress', 100.0, 'finished_at', v_iso, 'attempts', coalesce(r_attempts, 1)));
  INSERT INTO job_events (job_id, kind, data, created_at)
  VALUES (v_job, 'stage', json_build_object('stage', v_stages -> r_step ->> 'name', 'status', 'completed'), v_now);

  IF v_finish THEN
    INSERT INTO job_events (job_id, kind, data, created_at)
    VALUES (v_job, 'status', json_build_object('status', 'completed'), v_now);
    UPDATE jobs SET status = 'completed', progress = 100.0, step = 'Done', stages = v_stages::json,
           result = CASE WHEN json_typeof(v_input) = 'object' THEN v_input ELSE json_build_object('output', v_input) END,
           finished_at = v_now, updated_at = v_now, eta_seconds = NULL, eta_at = NULL,
           notified_at = NULL  -- news to the user again (as pipelines.services.webhooks.queue_delivery does)
     WHERE id = v_job;
    outcome := 'finished'; RETURN;
  END IF;

  v_nstep := r_step + 1;
  v_stages := jsonb_set(v_stages, ARRAY[v_nstep::text], (v_stages -> v_nstep) || jsonb_build_object(
    'status', 'processing', 'started_at', v_iso, 'finished_at', NULL, 'error', NULL));
  IF v_next->>'kind' = 'stage' THEN
    v_token := gen_random_uuid()::text;
    INSERT INTO stage_runs (job_id, step, item, name, actor, status, progress, attempts, waited, input,
                            dispatch_token, queue, due_at, updated_at)
    VALUES (v_job, v_nstep, -1, v_next->'runs'->0->>'name', v_next->'runs'->0->>'actor', 'queued', 0, 0, 0, v_input,
            v_token, v_next->'runs'->0->>'queue', v_now, v_now)
    RETURNING id INTO v_id;
    new_runs := jsonb_build_array(jsonb_build_object('id', v_id, 'token', v_token, 'item', -1));
  ELSE
    INSERT INTO stage_runs (job_id, step, item, name, status, progress, attempts, waited, started_at, updated_at)
    VALUES (v_job, v_nstep, -1, v_next->>'name', 'processing', 0, 0, 0, v_now, v_now);
    IF v_next->>'kind' = 'fan_out' THEN
      v_cap := coalesce((v_next->>'cap')::int, 0);
      v_count := json_array_length(v_input);
      WITH ins AS (
        INSERT INTO stage_runs (job_id, step, item, name, actor, status, progress, attempts, waited, input,
                                dispatch_token, queue, due_at, updated_at)
        SELECT v_job, v_nstep, (t.ord - 1)::int, v_next->'runs'->0->>'name', v_next->'runs'->0->>'actor',
               CASE WHEN v_cap = 0 OR t.ord <= v_cap THEN 'queued' ELSE 'waiting' END, 0, 0, 0, t.value,
               CASE WHEN v_cap = 0 OR t.ord <= v_cap THEN gen_random_uuid()::text END,
               CASE WHEN v_cap = 0 OR t.ord <= v_cap THEN v_next->'runs'->0->>'queue' END,
               CASE WHEN v_cap = 0 OR t.ord <= v_cap THEN v_now END, v_now
          FROM json_array_elements(v_input) WITH ORDINALITY AS t(value, ord)
        RETURNING id, item, dispatch_token)
      SELECT coalesce(jsonb_agg(jsonb_build_object('id', id, 'token', dispatch_token, 'item', item) ORDER BY item)
                      FILTER (WHERE dispatch_token IS NOT NULL), '[]'::jsonb)
        INTO new_runs FROM ins;
    ELSE  -- parallel: one run per branch, each on the same input
      v_count := jsonb_array_length(v_next->'runs');
      WITH ins AS (
        INSERT INTO stage_runs (job_id, step, item, name, actor, status, progress, attempts, waited, input,
                                dispatch_token, queue, due_at, updated_at)
        SELECT v_job, v_nstep, (b.ord - 1)::int, b.value->>'name', b.value->>'actor', 'queued', 0, 0, 0, v_input,
               gen_random_uuid()::text, b.value->>'queue', v_now, v_now
          FROM jsonb_array_elements(v_next->'runs') WITH ORDINALITY AS b(value, ord)
        RETURNING id, item, dispatch_token)
      SELECT jsonb_agg(jsonb_build_object('id', id, 'token', dispatch_token, 'item', item) ORDER BY item)
        INTO new_runs FROM ins;
    END IF;
    v_stages := jsonb_set(v_stages, ARRAY[v_nstep::text, 'items'],
                          jsonb_build_object('total', v_count, 'completed', 0, 'failed', 0));
  END IF;
  v_p := greatest(v_progress, (v_next->>'progress')::float8);
  UPDATE jobs SET progress = v_p, step = v_next->>'step_text', stages = v_stages::json, updated_at = v_now,
         eta_at = v_now, eta_seconds = conveyor_eta(v_p, (v_next->>'progress')::float8, v_now, v_now,
                                                    v_next->'history', 0.0)
   WHERE id = v_job;
  outcome := 'advanced';
END $$;
"""

# A batch of ends, in the order given (the caller sorts them by job, one lock order for every writer).
END_MANY = r"""
CREATE OR REPLACE FUNCTION conveyor_end_many(p_ends jsonb)
RETURNS TABLE(idx int, outcome text, new_runs jsonb, joined json) LANGUAGE plpgsql AS $$
DECLARE i int; r record;
BEGIN
  FOR i IN 0 .. jsonb_array_length(p_ends) - 1 LOOP
    SELECT * INTO r FROM conveyor_end(p_ends -> i);
    idx := i; outcome := r.outcome; new_runs := r.new_runs; joined := r.joined;
    RETURN NEXT;
  END LOOP;
END $$;
"""

# The runs of a batch of fetched messages, claimed in one call: [{"job", "run", "token", "first"}].
# Rows are found by primary key only (the status tests are expressions no index serves), so a plan
# made on tables without statistics cannot pick the status index.
CLAIM_MANY = r"""
CREATE OR REPLACE FUNCTION conveyor_claim_many(p_claims jsonb, p_lease float8)
RETURNS TABLE(run_id bigint, step int, item int, name text, attempts int, checkpoint json, started_at timestamp)
LANGUAGE plpgsql AS $$
DECLARE v_now timestamp := clock_timestamp() AT TIME ZONE 'utc';
BEGIN
  UPDATE jobs j SET status = 'processing', started_at = v_now, updated_at = v_now
   WHERE j.id IN (SELECT c->>'job' FROM jsonb_array_elements(p_claims) c WHERE (c->>'first')::boolean)
     AND (j.status || '') = 'pending';
  RETURN QUERY
  UPDATE stage_runs r SET status = 'processing', attempts = r.attempts + 1,
         lease_until = v_now + make_interval(secs => p_lease), updated_at = v_now,
         started_at = coalesce(r.started_at, v_now)
    FROM jsonb_array_elements(p_claims) c
   WHERE r.id = (c->>'run')::bigint AND (r.status || '') = 'queued' AND r.dispatch_token = c->>'token'
  RETURNING r.id, r.step, r.item, r.name::text, r.attempts, r.checkpoint, r.started_at;
END $$;
"""


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for body in (ETA, END_ONE, END_MANY, CLAIM_MANY):
        op.get_bind().exec_driver_sql(body)  # as written: no bind-parameter parsing of the colons


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for signature in ("conveyor_claim_many(jsonb, float8)", "conveyor_end_many(jsonb)", "conveyor_end(jsonb)",
                      "conveyor_eta(float8, float8, timestamp, timestamp, jsonb, float8)"):
        op.execute(f"DROP FUNCTION IF EXISTS {signature}")
