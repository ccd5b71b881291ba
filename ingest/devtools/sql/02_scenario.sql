-- Copied unchanged from ../shared/debezium-corpus/sql/02_scenario.sql: the SQL that produced the recorded corpus.
-- 02_scenario.sql : run while the connector is streaming (after the snapshot finished).
-- Every statement outside an explicit BEGIN/COMMIT is its own transaction (psql autocommit).
\set ON_ERROR_STOP on
SET search_path TO inventory;

-- ===== 1. inserts (op "c") =====
INSERT INTO customers (first_name, last_name, email) VALUES ('Sarah', 'Thompson', 'kitt@acme.com');          -- id 1005
INSERT INTO addresses (customer_id, street, city, state, zip, type)
  VALUES (1005, '1 Infinite Loop', 'Cupertino', 'California', '95014', 'SHIPPING');                          -- id 17
INSERT INTO products (name, description, weight) VALUES ('widget', 'temporary widget, PK will change', 0.25); -- id 110
INSERT INTO audit_log VALUES ('2024-03-01 12:00:00.5+00', 'bob', 'purchase', '{"order": 10005, "tags": ["a", "b"]}');
-- edge values rows (same values as snapshot rows 103/104)
INSERT INTO type_zoo (id, c_smallint, c_int, c_bigint, c_numeric_12_2, c_numeric, c_real, c_double, c_money, c_bool,
                      c_text, c_varchar, c_char, c_date, c_time, c_timetz, c_timestamp, c_timestamp3, c_timestamptz,
                      c_interval, c_uuid, c_json, c_jsonb, c_bytea, c_int_arr, c_text_arr, c_mood, c_status)
VALUES (3, -32768, -2147483648, -9223372036854775808, -9999999999.99, 'NaN', 'NaN', '-Infinity', -0.01, false,
        '', '', 'abcde', '0001-01-01', '00:00:00', '23:59:59.999999-11:30', '1970-01-01 00:00:00',
        '1969-12-31 23:59:59.999', '1900-01-01 00:00:00+00',
        '-1 days -00:00:01', '00000000-0000-0000-0000-000000000000', '[]', '{}', '\x', '{}', '{}', 'sad', 'edge');
INSERT INTO type_zoo (id, c_numeric, c_double, c_timestamp, c_timestamptz, c_date)
VALUES (4, 0.000000000000000000000000000001, 'Infinity', 'infinity', '-infinity', 'infinity');

-- ===== 2. updates (op "u") =====
UPDATE customers SET email = 'sarah.thompson@acme.com' WHERE id = 1005;      -- FULL: before is the full old row
UPDATE products SET weight = 3.5, description = 'Small 2-wheel scooter (v2)' WHERE id = 101;  -- DEFAULT: before = null
UPDATE products_on_hand SET quantity = quantity - 1 WHERE product_id = 102;
UPDATE audit_log SET details = '{"version": 2}' WHERE action = 'bootstrap';   -- no PK: key = null, FULL before
-- TOASTed columns c_big_text / c_big_bytea are NOT changed -> unavailable-value placeholder in "after"
UPDATE type_zoo SET c_int = c_int - 1, c_mood = 'ok', c_int_arr = '{4,5,6}' WHERE id = 1;
-- now change the big text too (placeholder only for c_big_bytea)
UPDATE type_zoo SET c_big_text = (SELECT string_agg(md5((i * 7)::text), '') FROM generate_series(1, 150) AS i) WHERE id = 1;

-- ===== 3. primary key change: delete(old key) + tombstone + create(new key) =====
UPDATE products SET id = 210 WHERE id = 110;

-- ===== 4. deletes (op "d") + tombstones =====
DELETE FROM orders WHERE id = 10004;                          -- DEFAULT: before has only the PK populated
DELETE FROM addresses WHERE customer_id = 1005;
DELETE FROM customers WHERE id = 1005;                        -- FULL: before is the full old row
DELETE FROM audit_log WHERE actor = 'alice';                  -- no PK: key = null
DELETE FROM type_zoo WHERE id = 4;

-- ===== 5. truncate (op "t") =====
TRUNCATE products_on_hand;
INSERT INTO products_on_hand VALUES (101, 10), (102, 20);

-- ===== 6. one transaction touching several tables =====
BEGIN;
INSERT INTO customers (first_name, last_name, email) VALUES ('Tx', 'Buyer', 'tx.buyer@example.com');   -- id 1006
INSERT INTO addresses (customer_id, street, city, state, zip, type)
  VALUES (1006, '500 Market St', 'San Francisco', 'California', '94105', 'BILLING');
INSERT INTO orders (order_date, purchaser, quantity, product_id) VALUES ('2024-03-02', 1006, 3, 103);    -- id 10005
UPDATE products_on_hand SET quantity = quantity - 3 WHERE product_id = 101;
INSERT INTO audit_log VALUES ('2024-03-02 09:00:00+00', 'tx.buyer', 'checkout', '{"order": 10005}');
COMMIT;

-- ===== 7. logical decoding messages (topic <prefix>.message) =====
SELECT pg_logical_emit_message(true,  'ingester-test', 'transactional message payload');
SELECT pg_logical_emit_message(false, 'ingester-test', 'non-transactional message payload');

-- ===== 8. schema changes =====
-- The pg_sleep() calls before each DDL give Debezium time to process all earlier events first. Without them,
-- Debezium (pgoutput) may read column metadata (optionality, defaults) from the *already altered* catalog
-- for events that were written before the DDL (observed: "Column 'zip' optionality could not be determined").
-- 8a. add a column, then more DML on that table
SELECT pg_sleep(3);
ALTER TABLE customers ADD COLUMN phone VARCHAR(32);
INSERT INTO customers (first_name, last_name, email, phone) VALUES ('Post', 'Alter', 'post.alter@example.com', '+1-555-0100');  -- id 1007
UPDATE customers SET phone = '+1-555-0101' WHERE id = 1001;
-- 8b. widen a column type: integer -> bigint
SELECT pg_sleep(3);
ALTER TABLE orders ALTER COLUMN quantity TYPE BIGINT;
INSERT INTO orders (order_date, purchaser, quantity, product_id) VALUES ('2024-03-03', 1007, 5000000000, 104);   -- id 10006
-- 8c. widen numeric(12,2) -> numeric(16,4) (scale changes)
SELECT pg_sleep(3);
ALTER TABLE type_zoo ALTER COLUMN c_numeric_12_2 TYPE NUMERIC(16,4);
UPDATE type_zoo SET c_numeric_12_2 = 123456789012.3456 WHERE id = 1;
-- 8d. drop a column, then insert
SELECT pg_sleep(3);
ALTER TABLE addresses DROP COLUMN zip;
INSERT INTO addresses (customer_id, street, city, state, type) VALUES (1007, '9 Post Alter Way', 'Portland', 'Oregon', 'LIVING');
