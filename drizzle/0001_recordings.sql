CREATE TABLE "recordings" (
	"session_id" text NOT NULL,
	"track_id" text NOT NULL,
	"epoch" integer NOT NULL,
	"kind" text NOT NULL,
	"state" text NOT NULL,
	"object_key" text NOT NULL,
	"size_bytes" integer,
	"plaintext_sha256" text,
	"duration_ms" integer,
	"recipient_fingerprints" jsonb NOT NULL,
	"attempts" integer DEFAULT 0 NOT NULL,
	"last_error" text,
	"created_at" timestamp with time zone DEFAULT now() NOT NULL,
	"uploaded_at" timestamp with time zone,
	CONSTRAINT "recordings_session_id_track_id_epoch_pk" PRIMARY KEY("session_id","track_id","epoch")
);
--> statement-breakpoint
ALTER TABLE "recordings" ADD CONSTRAINT "recordings_session_id_sessions_id_fk" FOREIGN KEY ("session_id") REFERENCES "public"."sessions"("id") ON DELETE cascade ON UPDATE no action;--> statement-breakpoint
CREATE INDEX "recordings_state_idx" ON "recordings" USING btree ("state");