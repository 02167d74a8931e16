BEGIN TRANSACTION;
CREATE TABLE alarms (
	id VARCHAR(160) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	hub_id VARCHAR(64) NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	category VARCHAR(32) NOT NULL, 
	urgent BOOLEAN NOT NULL, 
	place VARCHAR(256) NOT NULL, 
	raised_at DOUBLE NOT NULL, 
	received_at DOUBLE NOT NULL, 
	late BOOLEAN NOT NULL, 
	acked_at DOUBLE, 
	acked_by VARCHAR(128), 
	ack_channel VARCHAR(16), 
	cleared_at DOUBLE, 
	PRIMARY KEY (id)
);
INSERT INTO "alarms" VALUES('hub_legacy/alarm/0','hh_legacy','hub_legacy','smoke1','smoke',1,'keittiö',1750000005.0,1750000006.0,0,NULL,NULL,NULL,NULL);
CREATE TABLE api_tokens (
	id VARCHAR(64) NOT NULL, 
	token_hash VARCHAR(64) NOT NULL, 
	role VARCHAR(16) NOT NULL, 
	household_id VARCHAR(64), 
	created_at DOUBLE NOT NULL, 
	revoked BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	UNIQUE (token_hash)
);
CREATE TABLE audit (
	id INTEGER NOT NULL, 
	at DOUBLE NOT NULL, 
	actor VARCHAR(128) NOT NULL, 
	household_id VARCHAR(64), 
	action VARCHAR(64) NOT NULL, 
	target VARCHAR(256) NOT NULL, 
	detail TEXT NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "audit" VALUES(1,1750000000.0,'cli:root','hh_legacy','household.create','','');
CREATE TABLE clip_records (
	hub_id VARCHAR(64) NOT NULL, 
	seq BIGINT NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	clip_id VARCHAR(128) NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	started DOUBLE NOT NULL, 
	duration_s DOUBLE NOT NULL, 
	size BIGINT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	received_at DOUBLE NOT NULL, 
	CONSTRAINT clip_records_pk PRIMARY KEY (hub_id, seq)
);
CREATE TABLE clips (
	household_id VARCHAR(64) NOT NULL, 
	clip_id VARCHAR(128) NOT NULL, 
	hub_id VARCHAR(64) NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	started DOUBLE NOT NULL, 
	duration_s DOUBLE NOT NULL, 
	size BIGINT NOT NULL, 
	sha256 VARCHAR(64) NOT NULL, 
	reason VARCHAR(64) NOT NULL, 
	complete BOOLEAN NOT NULL, 
	created_at DOUBLE NOT NULL, 
	completed_at DOUBLE, 
	PRIMARY KEY (household_id, clip_id)
);
CREATE TABLE commands (
	id VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	hub_id VARCHAR(64) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	args JSON NOT NULL, 
	issued_at DOUBLE NOT NULL, 
	issued_by VARCHAR(128) NOT NULL, 
	delivered_at DOUBLE, 
	status VARCHAR(16) NOT NULL, 
	detail JSON, 
	completed_at DOUBLE, 
	PRIMARY KEY (id)
);
INSERT INTO "commands" VALUES('cmd_legacy','hh_legacy','hub_legacy','ping','{}',1750000000.0,'cli:root',1750000001.0,'done','{"ok": true}',1750000002.0);
CREATE TABLE consents (
	household_id VARCHAR(64) NOT NULL, 
	marketing BOOLEAN NOT NULL, 
	marketing_ban BOOLEAN NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	PRIMARY KEY (household_id), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
INSERT INTO "consents" VALUES('hh_legacy',0,0,1750000000.0);
CREATE TABLE contacts (
	member_id VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	phone VARCHAR(32) NOT NULL, 
	email VARCHAR(254) NOT NULL, 
	language VARCHAR(2) NOT NULL, 
	call_order INTEGER NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	PRIMARY KEY (member_id), 
	FOREIGN KEY(member_id) REFERENCES members (id) ON DELETE CASCADE, 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
INSERT INTO "contacts" VALUES('m_aino','hh_legacy','+358401234567','aino@example.fi','fi',0,1750000000.0);
CREATE TABLE devices (
	household_id VARCHAR(64) NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	hub_id VARCHAR(64) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	model VARCHAR(256) NOT NULL, 
	room VARCHAR(256) NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	PRIMARY KEY (household_id, device_id), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
CREATE TABLE diagnostics (
	hub_id VARCHAR(64) NOT NULL, 
	seq BIGINT NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	ts DOUBLE NOT NULL, 
	body JSON NOT NULL, 
	received_at DOUBLE NOT NULL, 
	CONSTRAINT diagnostics_pk PRIMARY KEY (hub_id, seq)
);
CREATE TABLE enroll_tokens (
	token_hash VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	created_at DOUBLE NOT NULL, 
	expires_at DOUBLE NOT NULL, 
	used_at DOUBLE, 
	hub_id VARCHAR(64), 
	PRIMARY KEY (token_hash), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
CREATE TABLE erasure_receipts (
	household_id VARCHAR(64) NOT NULL, 
	receipt_id VARCHAR(64) NOT NULL, 
	at DOUBLE NOT NULL, 
	body JSON NOT NULL, 
	PRIMARY KEY (household_id, receipt_id)
);
CREATE TABLE escalation_policies (
	household_id VARCHAR(64) NOT NULL, 
	policy JSON NOT NULL, 
	updated_at DOUBLE NOT NULL, 
	PRIMARY KEY (household_id), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
CREATE TABLE events (
	hub_id VARCHAR(64) NOT NULL, 
	lane VARCHAR(16) NOT NULL, 
	seq BIGINT NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	kind VARCHAR(32) NOT NULL, 
	state VARCHAR(32) NOT NULL, 
	attrs JSON NOT NULL, 
	ts DOUBLE NOT NULL, 
	received_at DOUBLE NOT NULL, 
	CONSTRAINT events_pk PRIMARY KEY (hub_id, lane, seq)
);
INSERT INTO "events" VALUES('hub_legacy','alarm',0,'hh_legacy','smoke1','smoke','alarm','{"battery": 90}',1750000005.0,1750000006.0);
CREATE TABLE households (
	id VARCHAR(64) NOT NULL, 
	name VARCHAR(256) NOT NULL, 
	created_at DOUBLE NOT NULL, 
	erased_before DOUBLE DEFAULT '0' NOT NULL, 
	PRIMARY KEY (id)
);
INSERT INTO "households" VALUES('hh_legacy','Virtanen',1750000000.0,0.0);
CREATE TABLE hub_health (
	hub_id VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	received_at DOUBLE NOT NULL, 
	version VARCHAR(64) NOT NULL, 
	uptime_s DOUBLE NOT NULL, 
	disk_free_bytes BIGINT NOT NULL, 
	disk_total_bytes BIGINT NOT NULL, 
	store_bytes BIGINT NOT NULL, 
	written_bytes_per_day BIGINT, 
	drivers_down INTEGER NOT NULL, 
	lag_alarm BIGINT NOT NULL, 
	lag_events BIGINT NOT NULL, 
	lag_readings BIGINT NOT NULL, 
	lag_clips BIGINT NOT NULL, 
	lag_diagnostics BIGINT NOT NULL, 
	body JSON NOT NULL, 
	PRIMARY KEY (hub_id)
);
CREATE TABLE hub_member_versions (
	hub_id VARCHAR(64) NOT NULL, 
	version INTEGER NOT NULL, 
	PRIMARY KEY (hub_id)
);
CREATE TABLE hubs (
	id VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	cert_sha256 VARCHAR(64) NOT NULL, 
	enrolled_at DOUBLE NOT NULL, 
	last_seen DOUBLE, 
	revoked BOOLEAN NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
INSERT INTO "hubs" VALUES('hub_legacy','hh_legacy','olohuone','abababababababababababababababababababababababababababababababab',1750000000.0,1750000060.0,0);
CREATE TABLE member_keys (
	member_id VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	recipient VARCHAR(128) NOT NULL, 
	created_at DOUBLE NOT NULL, 
	PRIMARY KEY (member_id), 
	FOREIGN KEY(member_id) REFERENCES members (id), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
INSERT INTO "member_keys" VALUES('m_aino','hh_legacy','age1legacyrecipient',1750000000.0);
CREATE TABLE member_log (
	household_id VARCHAR(64) NOT NULL, 
	version INTEGER NOT NULL, 
	digest VARCHAR(64) NOT NULL, 
	prev VARCHAR(64) NOT NULL, 
	signed TEXT NOT NULL, 
	created_at DOUBLE NOT NULL, 
	CONSTRAINT member_log_pk PRIMARY KEY (household_id, version), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
CREATE TABLE member_requests (
	id VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	member_id VARCHAR(64) NOT NULL, 
	recipient VARCHAR(128) NOT NULL, 
	ed25519 VARCHAR(64) NOT NULL, 
	note VARCHAR(256) NOT NULL, 
	requested_by VARCHAR(128) NOT NULL, 
	created_at DOUBLE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
CREATE TABLE members (
	id VARCHAR(64) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	name VARCHAR(128) NOT NULL, 
	email VARCHAR(254) NOT NULL, 
	phone VARCHAR(32) NOT NULL, 
	created_at DOUBLE NOT NULL, 
	PRIMARY KEY (id), 
	FOREIGN KEY(household_id) REFERENCES households (id)
);
INSERT INTO "members" VALUES('m_aino','hh_legacy','Aino','aino@example.fi','+358401234567',1750000000.0);
CREATE TABLE notify_jobs (
	id VARCHAR(220) NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	alarm_id VARCHAR(160) NOT NULL, 
	step INTEGER NOT NULL, 
	channel VARCHAR(8) NOT NULL, 
	member_id VARCHAR(64) NOT NULL, 
	due_at DOUBLE NOT NULL, 
	state VARCHAR(12) NOT NULL, 
	attempts INTEGER NOT NULL, 
	claimed_by VARCHAR(64), 
	lease_until DOUBLE, 
	intent_at DOUBLE, 
	provider_ref VARCHAR(255), 
	provider_status VARCHAR(24), 
	sent_at DOUBLE, 
	late BOOLEAN NOT NULL, 
	resends INTEGER NOT NULL, 
	error TEXT, 
	PRIMARY KEY (id)
);
CREATE TABLE pending_certs (
	hub_id VARCHAR(64) NOT NULL, 
	cert_sha256 VARCHAR(64) NOT NULL, 
	issued_at DOUBLE NOT NULL, 
	PRIMARY KEY (hub_id)
);
CREATE TABLE readings (
	hub_id VARCHAR(64) NOT NULL, 
	seq BIGINT NOT NULL, 
	household_id VARCHAR(64) NOT NULL, 
	device_id VARCHAR(128) NOT NULL, 
	quantity VARCHAR(32) NOT NULL, 
	value DOUBLE NOT NULL, 
	ts DOUBLE NOT NULL, 
	received_at DOUBLE NOT NULL, 
	CONSTRAINT readings_pk PRIMARY KEY (hub_id, seq)
);
INSERT INTO "readings" VALUES('hub_legacy',0,'hh_legacy','t1','temperature',20.0,1750000000.0,1750000001.0);
INSERT INTO "readings" VALUES('hub_legacy',1,'hh_legacy','t1','temperature',20.1,1750000001.0,1750000002.0);
INSERT INTO "readings" VALUES('hub_legacy',2,'hh_legacy','t1','temperature',20.2,1750000002.0,1750000003.0);
INSERT INTO "readings" VALUES('hub_legacy',3,'hh_legacy','t1','temperature',20.3,1750000003.0,1750000004.0);
INSERT INTO "readings" VALUES('hub_legacy',4,'hh_legacy','t1','temperature',20.4,1750000004.0,1750000005.0);
INSERT INTO "readings" VALUES('hub_legacy',5,'hh_legacy','t1','temperature',20.5,1750000005.0,1750000006.0);
INSERT INTO "readings" VALUES('hub_legacy',6,'hh_legacy','t1','temperature',20.6,1750000006.0,1750000007.0);
INSERT INTO "readings" VALUES('hub_legacy',7,'hh_legacy','t1','temperature',20.7,1750000007.0,1750000008.0);
INSERT INTO "readings" VALUES('hub_legacy',8,'hh_legacy','t1','temperature',20.8,1750000008.0,1750000009.0);
INSERT INTO "readings" VALUES('hub_legacy',9,'hh_legacy','t1','temperature',20.9,1750000009.0,1750000010.0);
INSERT INTO "readings" VALUES('hub_legacy',10,'hh_legacy','t1','temperature',21.0,1750000010.0,1750000011.0);
INSERT INTO "readings" VALUES('hub_legacy',11,'hh_legacy','t1','temperature',21.1,1750000011.0,1750000012.0);
INSERT INTO "readings" VALUES('hub_legacy',12,'hh_legacy','t1','temperature',21.2,1750000012.0,1750000013.0);
INSERT INTO "readings" VALUES('hub_legacy',13,'hh_legacy','t1','temperature',21.3,1750000013.0,1750000014.0);
INSERT INTO "readings" VALUES('hub_legacy',14,'hh_legacy','t1','temperature',21.4,1750000014.0,1750000015.0);
INSERT INTO "readings" VALUES('hub_legacy',15,'hh_legacy','t1','temperature',21.5,1750000015.0,1750000016.0);
INSERT INTO "readings" VALUES('hub_legacy',16,'hh_legacy','t1','temperature',21.6,1750000016.0,1750000017.0);
INSERT INTO "readings" VALUES('hub_legacy',17,'hh_legacy','t1','temperature',21.7,1750000017.0,1750000018.0);
INSERT INTO "readings" VALUES('hub_legacy',18,'hh_legacy','t1','temperature',21.8,1750000018.0,1750000019.0);
INSERT INTO "readings" VALUES('hub_legacy',19,'hh_legacy','t1','temperature',21.9,1750000019.0,1750000020.0);
INSERT INTO "readings" VALUES('hub_legacy',20,'hh_legacy','t1','temperature',22.0,1750000020.0,1750000021.0);
INSERT INTO "readings" VALUES('hub_legacy',21,'hh_legacy','t1','temperature',22.1,1750000021.0,1750000022.0);
INSERT INTO "readings" VALUES('hub_legacy',22,'hh_legacy','t1','temperature',22.2,1750000022.0,1750000023.0);
INSERT INTO "readings" VALUES('hub_legacy',23,'hh_legacy','t1','temperature',22.3,1750000023.0,1750000024.0);
INSERT INTO "readings" VALUES('hub_legacy',24,'hh_legacy','t1','temperature',22.4,1750000024.0,1750000025.0);
INSERT INTO "readings" VALUES('hub_legacy',25,'hh_legacy','t1','temperature',22.5,1750000025.0,1750000026.0);
INSERT INTO "readings" VALUES('hub_legacy',26,'hh_legacy','t1','temperature',22.6,1750000026.0,1750000027.0);
INSERT INTO "readings" VALUES('hub_legacy',27,'hh_legacy','t1','temperature',22.7,1750000027.0,1750000028.0);
INSERT INTO "readings" VALUES('hub_legacy',28,'hh_legacy','t1','temperature',22.8,1750000028.0,1750000029.0);
INSERT INTO "readings" VALUES('hub_legacy',29,'hh_legacy','t1','temperature',22.9,1750000029.0,1750000030.0);
INSERT INTO "readings" VALUES('hub_legacy',30,'hh_legacy','t1','temperature',23.0,1750000030.0,1750000031.0);
INSERT INTO "readings" VALUES('hub_legacy',31,'hh_legacy','t1','temperature',23.1,1750000031.0,1750000032.0);
INSERT INTO "readings" VALUES('hub_legacy',32,'hh_legacy','t1','temperature',23.2,1750000032.0,1750000033.0);
INSERT INTO "readings" VALUES('hub_legacy',33,'hh_legacy','t1','temperature',23.3,1750000033.0,1750000034.0);
INSERT INTO "readings" VALUES('hub_legacy',34,'hh_legacy','t1','temperature',23.4,1750000034.0,1750000035.0);
INSERT INTO "readings" VALUES('hub_legacy',35,'hh_legacy','t1','temperature',23.5,1750000035.0,1750000036.0);
INSERT INTO "readings" VALUES('hub_legacy',36,'hh_legacy','t1','temperature',23.6,1750000036.0,1750000037.0);
INSERT INTO "readings" VALUES('hub_legacy',37,'hh_legacy','t1','temperature',23.7,1750000037.0,1750000038.0);
INSERT INTO "readings" VALUES('hub_legacy',38,'hh_legacy','t1','temperature',23.8,1750000038.0,1750000039.0);
INSERT INTO "readings" VALUES('hub_legacy',39,'hh_legacy','t1','temperature',23.9,1750000039.0,1750000040.0);
INSERT INTO "readings" VALUES('hub_legacy',40,'hh_legacy','t1','temperature',24.0,1750000040.0,1750000041.0);
INSERT INTO "readings" VALUES('hub_legacy',41,'hh_legacy','t1','temperature',24.1,1750000041.0,1750000042.0);
INSERT INTO "readings" VALUES('hub_legacy',42,'hh_legacy','t1','temperature',24.2,1750000042.0,1750000043.0);
INSERT INTO "readings" VALUES('hub_legacy',43,'hh_legacy','t1','temperature',24.3,1750000043.0,1750000044.0);
INSERT INTO "readings" VALUES('hub_legacy',44,'hh_legacy','t1','temperature',24.4,1750000044.0,1750000045.0);
INSERT INTO "readings" VALUES('hub_legacy',45,'hh_legacy','t1','temperature',24.5,1750000045.0,1750000046.0);
INSERT INTO "readings" VALUES('hub_legacy',46,'hh_legacy','t1','temperature',24.6,1750000046.0,1750000047.0);
INSERT INTO "readings" VALUES('hub_legacy',47,'hh_legacy','t1','temperature',24.7,1750000047.0,1750000048.0);
INSERT INTO "readings" VALUES('hub_legacy',48,'hh_legacy','t1','temperature',24.8,1750000048.0,1750000049.0);
INSERT INTO "readings" VALUES('hub_legacy',49,'hh_legacy','t1','temperature',24.9,1750000049.0,1750000050.0);
CREATE INDEX readings_received ON readings (received_at);
CREATE INDEX readings_household_ts ON readings (household_id, ts);
CREATE INDEX events_household_ts ON events (household_id, ts);
CREATE INDEX events_received ON events (received_at);
CREATE INDEX clip_records_household ON clip_records (household_id, started);
CREATE INDEX clip_records_received ON clip_records (received_at);
CREATE INDEX clips_created ON clips (created_at);
CREATE INDEX diagnostics_received ON diagnostics (received_at);
CREATE INDEX commands_pending ON commands (hub_id, status);
CREATE INDEX ix_commands_household_id ON commands (household_id);
CREATE INDEX ix_audit_at ON audit (at);
CREATE INDEX ix_audit_household_id ON audit (household_id);
CREATE INDEX ix_erasure_receipts_at ON erasure_receipts (at);
CREATE INDEX ix_hub_health_household_id ON hub_health (household_id);
CREATE INDEX ix_alarms_household_id ON alarms (household_id);
CREATE INDEX alarms_open ON alarms (acked_at, raised_at);
CREATE INDEX alarms_received ON alarms (received_at);
CREATE INDEX notify_jobs_due ON notify_jobs (state, due_at);
CREATE INDEX ix_notify_jobs_alarm_id ON notify_jobs (alarm_id);
CREATE INDEX ix_notify_jobs_household_id ON notify_jobs (household_id);
CREATE INDEX ix_members_household_id ON members (household_id);
CREATE INDEX ix_hubs_household_id ON hubs (household_id);
CREATE INDEX ix_enroll_tokens_household_id ON enroll_tokens (household_id);
CREATE INDEX ix_member_requests_household_id ON member_requests (household_id);
CREATE INDEX ix_member_keys_household_id ON member_keys (household_id);
CREATE INDEX ix_contacts_household_id ON contacts (household_id);
COMMIT;
