-- The kitchen queue's rolling averages (db/kitchen.py) read each vendor's latest orders that
-- became ready: this index finds them newest first, without reading the vendor's whole log
-- through the rooms index (measured with bench/kitchen_queue.py). Built once, at upgrade.
CREATE INDEX IF NOT EXISTS events_ready_by_vendor_idx
    ON tiffin_rt.events ((payload->>'vendorId'), id DESC)
    WHERE kind = 'order_status' AND payload->>'status' = 'ready';
