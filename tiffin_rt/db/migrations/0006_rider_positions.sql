-- The last position of the rider of each order (riderLocation), so a customer who opens the
-- page late sees the rider at once. Written in batches, at most every tracking.store_interval
-- seconds per rider, never per update; what crosses nodes live goes through cluster.broker.
CREATE TABLE tiffin_rt.rider_positions (
    order_id    text             PRIMARY KEY,
    rider_id    text             NOT NULL,
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    heading     double precision,
    speed       double precision,
    accuracy    double precision,
    recorded_at timestamptz      NOT NULL,
    updated_at  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX rider_positions_updated_at_idx ON tiffin_rt.rider_positions (updated_at);

-- The optional trail (tracking.trail: true): the positions stored, one row per write, kept for
-- tracking.trail_retention_hours.
CREATE TABLE tiffin_rt.rider_trail (
    id          bigserial        PRIMARY KEY,
    order_id    text             NOT NULL,
    rider_id    text             NOT NULL,
    lat         double precision NOT NULL,
    lng         double precision NOT NULL,
    recorded_at timestamptz      NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX rider_trail_order_idx ON tiffin_rt.rider_trail (order_id, recorded_at);
CREATE INDEX rider_trail_created_at_idx ON tiffin_rt.rider_trail (created_at);
