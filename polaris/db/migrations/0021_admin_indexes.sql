-- Indexes for the admin API's lists and dashboard (10,000 chargers, millions of meter values).

-- Chargers that need attention (faulted, charging) are few: filters on them read this
-- small index instead of every connector.
CREATE INDEX connectors_attention_idx ON ocpp.connectors (charge_box_pk)
    WHERE status IN ('Faulted', 'Charging', 'SuspendedEV', 'SuspendedEVSE')
       OR coalesce(error_code, 'NoError') <> 'NoError';

-- "Energy today" sums sessions by when they ended.
CREATE INDEX transactions_stop_idx ON ocpp.transactions (stop_timestamp)
    WHERE stop_timestamp IS NOT NULL;
